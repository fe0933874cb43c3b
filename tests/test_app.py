"""The app factory (app/__init__.py): every part made for the app it serves, kept under the
app's ``collector.`` keys, so that two apps share nothing."""
from __future__ import annotations

import random

from flask import Flask

from app import PARTS as WIRED
from app import config, create_app, delivery
from app.config import Settings, get_settings
from app.delivery import get_pipeline
from app.openapi import get_document
from app.registry import Registry, get_registry
from tests.fakes import FAKE_KAFKA
from tests.helpers import EVENT, ONE_ACCOUNT, numbered, sent_by

PARTS = {"collector.settings", "collector.registry", "collector.delivery", "collector.collect", "collector.openapi"}


def test_each_accessor_gives_the_part_made_for_the_app(make_app, tmp_path):
    registry = tmp_path / "registry.toml"
    registry.write_text(ONE_ACCOUNT)
    app = make_app(COLLECTOR_REGISTRY=registry, COLLECTOR_MAX_BATCH=7)
    settings = get_settings(app)
    assert (settings.registry, settings.max_batch) == (str(registry), 7)
    assert isinstance(get_registry(app), Registry) and get_registry(app).path == str(registry)
    assert get_pipeline(app).settings is settings and get_pipeline(app).clients is FAKE_KAFKA
    document = get_document(app)
    assert get_document(app) is document  # built once
    assert app.test_client().get("/openapi.json").get_json() == document
    with app.app_context():  # the current app's, by default
        assert (get_settings(), get_registry(), get_pipeline(), get_document()) == (
            settings, get_registry(app), get_pipeline(app), document)


def test_the_settings_given_are_used_else_the_environment_is_read(tmp_path, monkeypatch):
    settings = Settings.from_env({"COLLECTOR_SPOOL_DIR": str(tmp_path / "given"), "COLLECTOR_MAX_BATCH": "3"})
    assert get_settings(create_app(settings, FAKE_KAFKA)) is settings
    monkeypatch.setenv("COLLECTOR_SPOOL_DIR", str(tmp_path / "read"))
    monkeypatch.setenv("COLLECTOR_MAX_BATCH", "9")
    assert get_settings(create_app(clients=FAKE_KAFKA)).max_batch == 9


def test_every_part_keeps_its_state_under_a_collector_key(app, client):
    assert client.post("/collect/1/1/event", json=EVENT).status_code == 204
    assert client.get("/openapi.json").status_code == 200
    assert set(app.extensions) >= PARTS
    assert [key for key in app.extensions if not key.startswith("collector.")] == []


def test_two_apps_share_no_state(make_app, tmp_path):
    large = make_app(COLLECTOR_SPOOL_DIR=tmp_path / "large", COLLECTOR_MAX_BATCH=100)
    small = make_app(COLLECTOR_SPOOL_DIR=tmp_path / "small", COLLECTOR_MAX_BATCH=2,
                     COLLECTOR_TOPIC_TEMPLATE="small.{aid}")
    batch = [numbered(n) for n in range(3)]
    assert large.test_client().post("/collect/1/1/events", json=batch).get_json()["accepted"] == 3
    refused = small.test_client().post("/collect/1/1/events", json=batch)  # after the large one was used
    assert (refused.status_code, refused.get_json()["message"]) == (
        400, "the batch holds 3 events, more than the 2 allowed")
    assert small.test_client().post("/collect/1/1/event", json=EVENT).status_code == 204
    assert [r["topic"] for r in sent_by(large)] == ["events.1"] * 3
    assert [r["topic"] for r in sent_by(small)] == ["small.1"]
    assert [r["value"]["status"] for r in sent_by(small, rejects=True)] == [400]  # the refused batch
    assert get_pipeline(small).log.dir != get_pipeline(large).log.dir
    batches = [get_document(a)["paths"]["/collect/{aid}/{tid}/events"]["post"]["requestBody"]["content"]
               ["application/json"]["schema"]["maxItems"] for a in (large, small)]
    assert batches == [100, 2]


def test_the_parts_work_wired_in_any_order(tmp_path):
    settings = Settings.from_env({"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"), "COLLECTOR_SENDER": "worker"})
    parts = [*WIRED, delivery]
    random.Random(7).shuffle(parts)
    for order in (parts, parts[::-1]):
        app = Flask("collector", static_folder=None)
        config.init_app(app, settings)
        for part in order:
            part.init_app(app, FAKE_KAFKA) if part is delivery else part.init_app(app)
        client = app.test_client()
        try:
            assert client.post("/collect/1/1/event", json=EVENT).status_code == 204, [p.__name__ for p in order]
            assert client.post("/collect/1/1/event", json={}).get_json()["code"] == 400
            assert client.get("/readyz").status_code in (200, 503) and client.get("/docs").status_code == 200
            assert [r["key"] for r in sent_by(app)] == [EVENT["instance_id"]]
        finally:
            get_pipeline(app).close()
