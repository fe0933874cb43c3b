"""What browsers, beacons and devices send, against a fake Kafka producer: CORS, encodings."""
from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tests.helpers import sent_by

EVENT = {"action": "view", "object": "form", "vendor": "V", "product": "P", "instance_id": "i1"}
BODY = json.dumps(EVENT).encode()
PAGE = "http://shop.example"


def test_preflight_allows_posting_json_from_any_origin(client, sent):
    response = client.options("/collect/1/1/event", headers={
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert response.headers["Access-Control-Max-Age"] == "7200"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert sent() == []


@pytest.mark.parametrize(("path", "kwargs", "status"), [
    ("/collect/1/1/event", {"json": EVENT}, 204),
    ("/collect/1/1/event", {"json": {}}, 400),
    ("/collect/x/1/event", {"json": EVENT}, 404),
    ("/collect/1/1/event", {"data": b"{}", "content_type": "application/xml"}, 415),
    ("/collect/1/1/event", {"data": b"x" * 70_000, "content_type": "application/json"}, 413),
])
def test_answers_and_errors_carry_cors_headers(client, path, kwargs, status):
    response = client.post(path, headers={"Origin": PAGE}, **kwargs)
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_restricted_origins(make_app):
    app = make_app(COLLECTOR_CORS_ORIGINS=PAGE)
    client = app.test_client()
    allowed = client.post("/collect/1/1/event", json=EVENT, headers={"Origin": PAGE})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == PAGE
    refused = client.post("/collect/1/1/event", data=BODY, content_type="text/plain;charset=UTF-8",
                          headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    assert refused.get_json() == {"code": 403, "message": "origin http://evil.example may not send events here"}
    assert "Access-Control-Allow-Origin" not in refused.headers
    preflight = client.options("/collect/1/1/event", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    server_to_server = client.post("/collect/1/1/event", json=EVENT)  # no Origin: not a browser
    assert server_to_server.status_code == 204
    assert len(sent_by(app)) == 2


def test_a_beacon_is_tracked(client, sent):
    response = client.post("/collect/1/1/event", data=BODY, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Origin": PAGE})
    assert response.status_code == 204
    [record] = sent()
    assert record["value"]["instance_id"] == "i1"


@pytest.mark.parametrize(("encoding", "compress"), [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some clients send
    ("GZIP", gzip.compress),
])
def test_compressed_bodies_are_tracked(client, sent, encoding, compress):
    response = client.post("/collect/1/1/event", data=compress(BODY),
                           headers={"Content-Type": "application/json", "Content-Encoding": encoding})
    assert response.status_code == 204
    [record] = sent()
    assert record["value"]["instance_id"] == "i1"


BOMB = gzip.compress(b'{"a":"' + b"0" * 20_000_000 + b'"}')  # 20 MB of zeros in ~20 kB


@pytest.mark.parametrize(("data", "encoding", "status", "message"), [
    (BOMB, "gzip", 413, "the body inflates to more than the limit of 65536 bytes"),
    (gzip.compress(b"x" * 65_537), "gzip", 413, "the body inflates to more than the limit of 65536 bytes"),
    (BODY, "br", 415, "Content-Encoding must be gzip, deflate or identity, not br"),
    (BODY, "gzip, gzip", 415, "Content-Encoding must be gzip, deflate or identity, not gzip, gzip"),
    (BODY, "gzip", 400, "the body is not valid gzip: Error -3 while decompressing data: incorrect header check"),
    (gzip.compress(BODY)[:-12], "gzip", 400, "the gzip body is truncated or has trailing data"),
    (gzip.compress(BODY) + b"junk", "gzip", 400, "the gzip body is truncated or has trailing data"),
    (b"", "gzip", 400, "the gzip body is truncated or has trailing data"),
])
def test_bad_compressed_bodies_are_refused(client, sent, data, encoding, status, message):
    assert len(BOMB) < 65_536
    response = client.post("/collect/1/1/event", data=data,
                           headers={"Content-Type": "application/json", "Content-Encoding": encoding})
    assert response.status_code == status
    assert response.get_json() == {"code": status, "message": message}
    assert sent() == []


def test_no_content_type_is_tracked(client, sent):
    response = client.post("/collect/1/1/event", data=BODY, headers={"Content-Type": ""})
    assert response.status_code == 204
    assert len(sent()) == 1
