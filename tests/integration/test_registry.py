"""The registry with gunicorn and the real broker: a broken file stops the service, a change is
taken without a restart, topics only for registered accounts."""
from __future__ import annotations

import json
import re
import signal

import pytest
from kafka import KafkaConsumer

from tests.helpers import EVENT, ONE_ACCOUNT, Collector, account_id, new_account, replace_file, vendor_event, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("text", "problem"), [
    ("[accounts.1]\ntrackers = [\"one\"]\n", "account 1: tracker 'one' must be a positive decimal number or a UUID"),
    (ONE_ACCOUNT + '[vendors."Vendor A"]\nproducts = [""]\n', "vendor 'Vendor A': product '' must not be blank"),
    (None, "No such file or directory"),
], ids=["account", "vendor", "missing"])
def test_gunicorn_refuses_to_start_with_a_broken_registry(broker, tmp_path, text, problem):
    path = tmp_path / "registry.toml"
    if text is not None:
        path.write_text(text)
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_REGISTRY": str(path)})
    with pytest.raises(RuntimeError):
        collector.start()
    assert collector.stop() == 1
    assert f"cannot start: {path} (COLLECTOR_REGISTRY): {problem}" in collector.log.read_text()


def test_a_vendor_added_to_the_registry_is_taken_without_a_restart(broker, tmp_path, read_topic):
    aid = new_account(broker)
    path = tmp_path / "registry.toml"
    accounts = f'[accounts.{aid}]\ntrackers = ["1"]\n\n[vendors."Vendor A"]\nproducts = []\n'
    replace_file(path, accounts)
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_REGISTRY": str(path)}).start()
    try:
        status, _, body = collector.post_event(vendor_event("Acme", "Rockets", instance_id="before"), aid=aid)
        assert (status, json.loads(body)["errors"]) == (400, {"vendor": ["is not registered"]})
        workers = collector.worker_pids()
        replace_file(path, accounts + '\n[vendors.Acme]\nproducts = ["Rockets"]\n')
        # Each worker reloads on its own, on a request: poll until every one has, so that
        # from then on any worker takes Acme's events.
        reloaded = r"\[(\d+)\] \[INFO\] app.registry: registry reloaded from "

        def every_worker_reloaded() -> bool:
            collector.post_event(vendor_event("Acme", "Rockets", instance_id="polling"), aid=aid)
            return len(set(re.findall(reloaded, collector.log.read_text()))) == collector.workers

        wait_until(every_worker_reloaded, timeout=30, what="every worker's reload")
        for i in range(4):
            assert collector.post_event(vendor_event("Acme", "Rockets", instance_id=f"after-{i}"), aid=aid)[0] == 204
        assert collector.worker_pids() == workers  # no restart

        def delivered() -> list:
            records = read_topic(f"events.{aid}")
            return records if {f"after-{i}".encode() for i in range(4)} <= {r.key for r in records} else []

        records = wait_until(delivered, timeout=30, what="the events after the reload in Kafka")
    finally:
        collector.stop(signal.SIGTERM)
    assert {json.loads(r.value)["vendor"] for r in records} == {"Acme"}
    assert b"before" not in {r.key for r in records}


def test_topics_are_created_with_the_configured_partitions_and_only_for_registered_accounts(broker, tmp_path):
    known, unknown = account_id(), account_id()
    path = tmp_path / "registry.toml"
    replace_file(path, f'[accounts.{known}]\ntrackers = ["1"]\n')
    collector = Collector(broker.servers, tmp_path, env={
        "COLLECTOR_REGISTRY": str(path), "COLLECTOR_TOPIC_PARTITIONS": "3"}).start()
    try:
        assert collector.post_event(EVENT, aid=unknown)[0] == 404
        assert collector.post_event(EVENT, aid=known)[0] == 204
        consumer = KafkaConsumer(bootstrap_servers=broker.servers, api_version=(3, 9))
        try:
            wait_until(lambda: f"events.{known}" in consumer.topics(), what="the topic created")
            assert consumer.partitions_for_topic(f"events.{known}") == {0, 1, 2}
            assert f"events.{unknown}" not in consumer.topics()
        finally:
            consumer.close()
    finally:
        collector.stop(signal.SIGTERM)
    assert "COLLECTOR_REGISTRY is not set" not in collector.log.read_text()


def test_without_a_registry_every_id_is_accepted_and_that_is_logged_once(collector, broker):
    assert collector.post_event(EVENT, aid=account_id())[0] == 204
    assert collector.log.read_text().count("COLLECTOR_REGISTRY is not set") == 1


def test_every_worker_answers_from_the_same_registry_after_a_good_edit_and_a_broken_one(broker, tmp_path):
    """A worker that had no request between the two edits answers as the one that read the good one."""
    first, added = new_account(broker), new_account(broker)
    path = tmp_path / "registry.toml"
    replace_file(path, f'[accounts.{first}]\ntrackers = ["1"]\n')
    collector = Collector(broker.servers, tmp_path, env={"COLLECTOR_REGISTRY": str(path)}).start()
    try:
        replace_file(path, f'[accounts.{first}]\ntrackers = ["1"]\n\n[accounts.{added}]\ntrackers = ["1"]\n')
        wait_until(lambda: collector.post_event(EVENT, aid=added)[0] == 204, what="a worker that read the good edit")
        replace_file(path, f'[accounts.{first}]\ntrackers = ["1"\n')
        refused = r"\[(\d+)\] \[ERROR\] app.registry: registry refused, answering from the last good one: "

        def every_worker_refused() -> bool:  # each looks at the file on its first request a second after
            collector.post_event(EVENT, aid=first)
            return len(set(re.findall(refused, collector.log.read_text()))) == collector.workers

        wait_until(every_worker_refused, timeout=30, what="every worker's look at the broken file")
        statuses = [collector.post_event(EVENT, aid=added)[0] for _ in range(20)]
    finally:
        collector.stop(signal.SIGTERM)
    assert statuses == [204] * 20
    messages = re.findall(refused + "(.*)", collector.log.read_text())
    assert len({why for _, why in messages}) == 1 and "(COLLECTOR_REGISTRY): not valid TOML" in messages[0][1]
