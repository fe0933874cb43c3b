"""The rejects stream: each refused event (a 4xx of a collect route, a refused item of a batch)
is also a record on the one rejects topic, with its reason and an excerpt of its body,
rate-limited per account and in all."""
from __future__ import annotations

import gzip
import time

import orjson
import pytest
from kafka.errors import InvalidRecordError, KafkaTimeoutError

from app import lanes
from app.logs import Throttle
from app.rejects import Limiter
from app.schemas import RejectSchema
from tests.helpers import EVENT, metric, numbers, post_numbered, sent_by, settled, started

BAD = {"object": "form", "vendor": "V", "product": "P", "instance_id": "i1", "note": "é"}


def rejects(app):
    return sent_by(app, rejects=True)


def test_a_refused_event_is_a_record_on_the_rejects_topic_with_its_reason_and_body(app, client, sent):
    body = orjson.dumps(BAD)
    answer = client.post("/collect/1/1/event", data=body, content_type="application/json",
                         headers={"User-Agent": "device/1.0", "Origin": "https://shop.example"})
    assert client.post("/collect/1/1/event", json=EVENT).status_code == 204
    [record] = rejects(app)
    assert (record["topic"], record["key"]) == ("collector.rejects", "1")
    value = record["value"]
    assert value.pop("received_at").endswith("Z")
    assert value == {
        "aid": "1", "tid": "1", "path": "/collect/1/1/event", "status": 400, "message": answer.get_json()["message"],
        "errors": {"action": ["is required"]}, "index": None, "user_agent": "device/1.0",
        "origin": "https://shop.example", "ip": "127.0.0.1", "body": body.decode(), "body_bytes": len(body)}
    assert [r["value"]["action"] for r in sent()] == ["view"], "the good event only, on its own topic"


def test_each_refused_item_of_a_batch_is_a_record_with_its_index_and_its_own_json(app, client, sent):
    answer = client.post("/collect/1/2/events", json=[EVENT, BAD, 7])
    assert answer.get_json()["accepted"] == 1
    found = [r["value"] for r in rejects(app)]
    assert [(v["index"], v["status"], v["tid"]) for v in found] == [(1, 400, "2"), (2, 400, "2")]
    assert found[0]["errors"] == {"action": ["is required"]}
    assert found[0]["message"] == "the event was not tracked: action is required"
    assert orjson.loads(found[0]["body"]) == BAD and found[1]["body"] == "7"
    assert found[1]["errors"] == {"_schema": ["must be a JSON object, not a number"]}
    assert len(sent()) == 1


@pytest.mark.parametrize("path, status", [
    ("/collect/007x/1/event", 404),  # a malformed id: its key is the id as sent
    ("/collect/007/abc/event", 404),
])
def test_a_refused_path_is_keyed_by_the_account_id_as_sent_and_makes_no_other_topic(app, client, path, status,
                                                                                   fake_cluster):
    fake_cluster.only_created = True  # a cluster with only the topics the collector creates
    assert client.post(path, data=b'{"action": "view"}', content_type="application/json").status_code == status
    [record] = rejects(app)
    assert record["key"] == path.split("/")[2]
    assert record["value"]["body"] == '{"action": "view"}', "read for the excerpt, though the answer came first"
    assert record["value"]["body_bytes"] == 18
    assert set(fake_cluster.topics) == {"collector.rejects"}


def test_the_excerpt_is_bounded_and_can_be_turned_off(make_app, tmp_path):
    app = make_app(COLLECTOR_REJECTS_EXCERPT_BYTES=16)
    client = app.test_client()
    client.post("/collect/1/1/event", data=b"x" * 100_000, content_type="application/json")  # 413 unread
    client.post("/collect/1/1/event", data=gzip.compress(orjson.dumps(BAD)), content_type="application/json",
                headers={"Content-Encoding": "gzip"})
    client.post("/collect/1/1/events", json=[BAD])
    found = [r["value"] for r in rejects(app)]
    assert [(v["status"], v["body"], v["body_bytes"]) for v in found] == [
        (413, "x" * 16, 100_000), (400, orjson.dumps(BAD)[:16].decode(), len(orjson.dumps(BAD))),
        (400, orjson.dumps(BAD)[:16].decode(), len(orjson.dumps(BAD)))]
    off = make_app(COLLECTOR_REJECTS_EXCERPT_BYTES=0, COLLECTOR_SPOOL_DIR=tmp_path / "off")
    off.test_client().post("/collect/1/1/event", json=BAD)
    [value] = [r["value"] for r in rejects(off)]
    assert "body" not in value and "body_bytes" not in value and value["errors"] == {"action": ["is required"]}


def test_a_cut_multibyte_character_becomes_a_replacement_not_an_error(make_app):
    app = make_app(COLLECTOR_REJECTS_EXCERPT_BYTES=2)
    app.test_client().post("/collect/1/1/event", data='"éé"'.encode(), content_type="application/json")
    [value] = [r["value"] for r in rejects(app)]
    assert value["body"] == '"\ufffd' and value["body_bytes"] == 6


def test_a_check_and_a_good_event_publish_nothing(app, client, sent):
    assert client.post("/collect/1/1/event?validate=true", json=BAD).status_code == 400
    assert client.post("/collect/1/1/events?validate=true", json=[BAD]).status_code == 200
    assert client.post("/collect/1/1/event", json=EVENT).status_code == 204
    assert len(sent()) == 1
    assert rejects(app) == []
    assert client.post("/collect/1/1/event?validate=yes", json=EVENT).status_code == 400
    assert [r["value"]["message"] for r in rejects(app)] == ["validate must be true or false, not yes"]


def test_the_topic_is_the_settings(make_app):
    app = make_app(COLLECTOR_REJECTS_TOPIC="bad-rows")
    app.test_client().post("/collect/1/1/event", json=BAD)
    assert [r["topic"] for r in rejects(app)] == ["bad-rows"]


def test_over_the_rate_rejects_are_sampled_out_and_counted(make_app):
    app = make_app(COLLECTOR_REJECTS_PER_SECOND=4, COLLECTOR_REJECTS_PER_ACCOUNT=100, WEB_CONCURRENCY=2)
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    began = time.monotonic()
    for _ in range(50):
        client.post("/collect/1/1/event", json=BAD)
    took = time.monotonic() - began
    assert len(rejects(app)) <= 2 + 2 * took, "this worker's share: a burst of 2, then 2 a second"
    after = client.get("/metrics").get_data(as_text=True)
    published = metric(after, 'collector_rejects_total{outcome="published"}') - metric(
        before, 'collector_rejects_total{outcome="published"}')
    sampled = metric(after, 'collector_rejects_total{outcome="sampled_out"}') - metric(
        before, 'collector_rejects_total{outcome="sampled_out"}')
    assert (published, published + sampled) == (len(rejects(app)), 50)


def test_a_reject_the_log_cannot_keep_is_dropped_and_the_answer_stays(make_app, unwritable_spool):
    app = make_app(COLLECTOR_SPOOL_DIR=unwritable_spool)
    client = app.test_client()
    before = metric(client.get("/metrics").get_data(as_text=True), 'collector_rejects_total{outcome="dropped"}')
    answer = client.post("/collect/1/1/event", json=BAD)
    assert answer.status_code == 400 and answer.get_json()["errors"] == {"action": ["is required"]}
    after = metric(client.get("/metrics").get_data(as_text=True), 'collector_rejects_total{outcome="dropped"}')
    assert after - before == 1


# -- the limiter, on a clock of its own ----------------------------------------------------------

def test_the_limiter_holds_each_account_and_all_to_their_rates():
    limiter = Limiter(per_second=3, per_account=1)
    assert [limiter.take("a", 10.0) for _ in range(3)] == [True, False, False], "one a second for one account"
    assert [limiter.take(a, 10.0) for a in "bcd"] == [True, True, False], "three a second in all"
    assert limiter.take("a", 10.5) is False and limiter.take("a", 11.0) is True, "refilled after a second"
    assert [limiter.take(a, 100.0) for a in "abcde"] == [True, True, True, False, False], "a burst of one second"


def test_a_share_under_one_a_second_still_passes_one_then_waits():
    limiter = Limiter(per_second=0.5, per_account=0.25)
    assert limiter.take("a", 0.0) is True
    assert limiter.take("a", 2.0) is False and limiter.take("b", 2.0) is True, "the account waits 4 s, all 2 s"
    assert limiter.take("a", 4.0) is True


def test_zero_publishes_nothing():
    assert Limiter(per_second=0, per_account=10).take("a", 0.0) is False


def test_the_account_buckets_stay_bounded_under_many_accounts():
    limiter = Limiter(per_second=100_000, per_account=1)
    for n in range(50_000):
        limiter.take(str(n), n / 100)  # 100 new accounts a second, each full again after a second
    assert len(limiter._accounts) <= Limiter.MOST + 1


def test_the_record_is_the_one_the_openapi_document_describes(app, client):
    client.post("/collect/1/1/event", json=BAD)
    [value] = [r["value"] for r in rejects(app)]
    document = client.get("/openapi.json").get_json()
    schema = document["components"]["schemas"]["Reject"]
    assert list(schema["properties"]) == list(value), "its fields, in their order"
    assert set(schema["required"]) == set(value) - {"body", "body_bytes"}
    assert "collector.rejects" in document["info"]["description"] and "Reject" in document["info"]["description"]
    assert RejectSchema().validate(value) == {}


# -- what the review of the rejects stream found (/work/review-24.md) -----------------------------

@pytest.mark.parametrize("error", [InvalidRecordError("refused for good"), KafkaTimeoutError("failing")])
def test_rejects_kafka_will_not_take_are_dropped_never_dead_lettered_and_hold_nothing_back(make_app, tmp_path, error,
                                                                                          caplog, monkeypatch):
    monkeypatch.setattr(lanes, "dropping", Throttle(lanes.log))  # logged once a minute: this test's own
    app = make_app(COLLECTOR_SPOOL_SEGMENT_BYTES=1024**2)
    client, pipeline = started(app)
    fake = pipeline.sender.producer
    fake.refuse["collector.rejects"] = error
    before = metric(client.get("/metrics").get_data(as_text=True), 'collector_rejects_total{outcome="dropped"}')
    for n in range(5):
        client.post("/collect/1/1/event", json=BAD)
        assert post_numbered(client, n).status_code == 204
    settled(pipeline)
    assert numbers(fake) == list(range(5))
    assert not (tmp_path / "spool" / "dead-letter").exists()
    after = metric(client.get("/metrics").get_data(as_text=True), 'collector_rejects_total{outcome="dropped"}')
    assert after - before == 5
    assert pipeline.sender.backlog == 0, "nothing left unacknowledged in the log"
    assert "dropped, as Kafka would not take them" in caplog.text


def test_a_reject_that_cannot_be_made_leaves_the_answer_as_it_is(app, client, monkeypatch, caplog):
    def broken(*args: object) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.extensions["collector.rejects"], "value", broken)
    answer = client.post("/collect/1/1/event", json=BAD)
    assert answer.status_code == 400 and answer.get_json()["errors"] == {"action": ["is required"]}
    assert "a reject could not be published: RuntimeError('a bug')" in caplog.text


def test_rejects_keep_to_the_first_half_of_the_log_and_events_have_the_rest(make_app):
    app = make_app(COLLECTOR_SPOOL_MAX_BYTES=1024**2, COLLECTOR_REJECTS_EXCERPT_BYTES=65536,
                   COLLECTOR_REJECTS_PER_SECOND=100_000, COLLECTOR_REJECTS_PER_ACCOUNT=100_000)
    client, pipeline = started(app)
    pipeline.sender.producer.mode = "hold"  # Kafka away: nothing leaves the log
    big = orjson.dumps({**BAD, "padding": "x" * 60_000})
    for _ in range(40):  # 40 x 60 KB would fill the log, were rejects not held to half of it
        assert client.post("/collect/1/1/event", data=big, content_type="application/json").status_code == 400
    assert pipeline.log.held <= 1024**2 // 2 + len(big) + 2048
    padded = orjson.dumps({**EVENT, **{f"p{n}": "x" * 8000 for n in range(7)}})
    for n in range(6):  # 6 x 56 KB more events still fit
        assert client.post("/collect/1/1/event", data=padded, content_type="application/json").status_code == 204, n


def test_every_field_a_caller_chooses_is_cut_to_its_bound(app, client):
    client.post("/collect/" + "9" * 3000 + "/1/event", data=b"{}", content_type="application/json",
                headers={"User-Agent": "u" * 20_000, "Origin": "https://" + "o" * 20_000})
    [record] = rejects(app)
    value = record["value"]
    assert len(record["key"]) == 64 and len(value["aid"]) == 64 and len(value["path"]) <= 256
    assert len(value["user_agent"]) < 1100 and len(value["origin"]) < 1100 and len(value["message"]) <= 1024
    assert len(orjson.dumps(value)) < 6000


def test_an_event_of_many_bad_fields_has_its_errors_cut(make_app):
    app = make_app(COLLECTOR_MAX_FIELDS=1000)
    body = {**EVENT, **{f"k{n}": {"deep": [[[[[[[[[[[1]]]]]]]]]]]} for n in range(10)}, "action": 5, "object": 6,
            "vendor": 7, "product": 8, "instance_id": 9, "label": 10, "score": "x"}
    app.test_client().post("/collect/1/1/event", json=body)
    [value] = [r["value"] for r in rejects(app)]
    assert len(orjson.dumps(value["errors"])) <= 1100


def test_changing_the_account_id_does_not_get_round_the_account_limit(make_app, vendors_file):
    app = make_app(COLLECTOR_REGISTRY=str(vendors_file), COLLECTOR_REJECTS_PER_SECOND=1000,
                   COLLECTOR_REJECTS_PER_ACCOUNT=4, WEB_CONCURRENCY=1)
    client = app.test_client()
    began = time.monotonic()
    for n in range(50):  # unregistered accounts, then malformed ids: one bucket for all of them
        client.post(f"/collect/{1000 + n}/1/event", json=EVENT)
        client.post(f"/collect/x{n}/1/event", json=EVENT)
    took = time.monotonic() - began
    for _ in range(10):
        client.post("/collect/1/1/event", json=BAD)  # the registered account has its own
    keys = [r["key"] for r in rejects(app)]
    assert len([k for k in keys if k != "1"]) <= 4 + 4 * took, "a burst of 4, then 4 a second, for them all"
    assert keys.count("1") >= 4


def test_a_malformed_chunked_body_is_a_400_and_a_reject_not_a_500(make_app):
    app = make_app()

    class Broken:
        def read(self, size: int = -1) -> bytes:
            raise ValueError("Invalid chunk size")  # as gunicorn's ParseException: not an OSError

    for path in ("/collect/1/1/event", "/collect/x/1/event"):
        environ = {"wsgi.input": Broken(), "wsgi.input_terminated": True}
        answer = app.test_client().post(path, headers={"Transfer-Encoding": "chunked"}, environ_overrides=environ)
        assert answer.status_code in (400, 404), answer.get_data()
    values = [r["value"] for r in rejects(app)]
    assert [(v["status"], v["body"]) for v in values] == [(400, None), (404, None)]
    assert values[0]["message"] == "the body could not be read: ValueError: Invalid chunk size"


def test_a_batch_s_refused_items_are_one_append(app, client, monkeypatch):
    pipeline = app.extensions["collector.delivery"]
    calls = []
    keep = pipeline.keep
    monkeypatch.setattr(pipeline, "keep", lambda records: calls.append(len(records)) or keep(records))
    client.post("/collect/1/1/events", json=[BAD, EVENT, BAD, BAD])
    assert calls == [3]
