"""Delivery as the app sees it (app/delivery.py): every 204 is on disk before the answer; events
the log cannot keep, all of a batch or none, are a 503."""
from __future__ import annotations

import json

from app.log import Log
from app.segment import HEADER, decode
from tests.helpers import EVENT, numbered, post_numbered, sent_by, started


def test_every_204_is_on_disk_before_the_answer(make_app):
    client, pipeline = started(make_app())
    pipeline.sender.producer.mode = "hold"  # Kafka answers nothing
    for n in range(5):
        assert post_numbered(client, n).status_code == 204
    [segment] = pipeline.log.owned()
    data, offset, on_disk = segment.path.read_bytes(), len(HEADER), []  # the file, not what the worker remembers
    while (found := decode(data, offset))[0] is not None:
        record, _, offset = found
        on_disk.append(json.loads(record.value)["properties"]["n"])
    assert (on_disk, offset) == (list(range(5)), len(data))
    another = Log(str(pipeline.log.dir), 1 << 30, 1 << 20)  # another worker's log, on the same directory
    assert another.paths() == [segment.path]
    another.adopt()
    assert another.owned() == []  # the worker holds it: no other sender takes it


def test_a_batch_the_log_cannot_keep_is_queued_not_at_all(make_app):
    app = make_app(COLLECTOR_SPOOL_MAX_BYTES=1024**2, COLLECTOR_MAX_BODY_BYTES=900 * 1024)
    client = app.test_client()
    first = [numbered(i, pad="x" * 8000) for i in range(90)]  # 90 events of 8 kB, then 40 more: over the log's 1 MiB
    assert client.post("/collect/1/1/events", json=first).get_json()["accepted"] == 90
    response = client.post("/collect/1/1/events", json=[numbered(i, pad="x" * 8000) for i in range(90, 130)])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["message"].startswith("none of the 40 events was tracked: the log on disk cannot keep")
    assert [r["value"]["properties"]["n"] for r in sent_by(app)] == list(range(90))


def test_with_the_log_unwritable_a_batch_is_refused_whole(make_app, unwritable_spool):
    client = make_app(COLLECTOR_SPOOL_DIR=unwritable_spool).test_client()
    response = client.post("/collect/1/1/events", json=[numbered(i) for i in range(3)])
    assert response.status_code == 503
    assert response.get_json()["message"].startswith("none of the 3 events was tracked: the log on disk cannot keep")


def test_events_go_to_the_topic_the_template_names_keyed_by_instance(make_app):
    app = make_app(COLLECTOR_TOPIC_TEMPLATE="tracking-{aid}-v1")
    assert app.test_client().post("/collect/007/1/event", json={**EVENT, "instance_id": "chat-9"}).status_code == 204
    [record] = sent_by(app)
    assert (record["topic"], record["key"]) == ("tracking-7-v1", "chat-9")
