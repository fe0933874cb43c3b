"""The request body (app/body.py), through the collect route: content types, beacons,
compression, size, and what the JSON parser refuses; nothing refused is queued."""
from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tests.helpers import EVENT, refused

BODY = json.dumps(EVENT).encode()
PAGE = "http://shop.example"


@pytest.mark.parametrize("content_type", [None, "text/plain;charset=UTF-8", "application/json; charset=utf-8"])
def test_accepted_content_types(client, sent, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/collect/1/1/event", data=b'{"action":"view","object":"form","vendor":"V",'
                           b'"product":"P","instance_id":"i"}', headers=headers)
    assert response.status_code == 204
    assert len(sent()) == 1


def test_no_content_type_is_tracked(client, sent):
    response = client.post("/collect/1/1/event", data=BODY, headers={"Content-Type": ""})
    assert response.status_code == 204
    assert len(sent()) == 1


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
    pytest.param(BOMB, "gzip", 413, "the body inflates to more than the limit of 65536 bytes", id="bomb"),
    pytest.param(gzip.compress(b"x" * 65_537), "gzip", 413, "the body inflates to more than the limit of 65536 bytes",
                 id="one-byte-over"),
    pytest.param(BODY, "br", 415, "Content-Encoding must be gzip, deflate or identity, not br", id="brotli"),
    pytest.param(BODY, "gzip, gzip", 415, "Content-Encoding must be gzip, deflate or identity, not gzip, gzip",
                 id="gzip-twice"),
    pytest.param(BODY, "gzip", 400,
                 "the body is not valid gzip: Error -3 while decompressing data: incorrect header check",
                 id="not-gzip"),
    pytest.param(gzip.compress(BODY)[:-12], "gzip", 400, "the gzip body is truncated or has trailing data",
                 id="truncated"),
    pytest.param(gzip.compress(BODY) + b"junk", "gzip", 400, "the gzip body is truncated or has trailing data",
                 id="trailing-data"),
    pytest.param(b"", "gzip", 400, "the gzip body is truncated or has trailing data", id="empty"),
])
def test_bad_compressed_bodies_are_refused(client, sent, data, encoding, status, message):
    assert len(BOMB) < 65_536
    response = client.post("/collect/1/1/event", data=data,
                           headers={"Content-Type": "application/json", "Content-Encoding": encoding})
    assert response.status_code == status
    assert response.get_json() == {"code": status, "message": message}
    assert sent() == []


NOT_JSON = [
    pytest.param('{"action": "view", "score": NaN}', 400, None, id="nan"),
    pytest.param('{"action": "view", "score": Infinity}', 400, None, id="infinity"),
    pytest.param('{"action": "view", "score": 1e999}', 400, None, id="overflow"),
    pytest.param('{"action": "view", "score": 01}', 400, None, id="leading-zero"),
    pytest.param('{"action": "view", "score": +1}', 400, None, id="plus"),
    pytest.param('{"action": "view", "score": .5}', 400, None, id="bare-fraction"),
    pytest.param('{"action": "view", "score": 0x10}', 400, None, id="hex"),
    pytest.param('{"action": "\\ud800"}', 400, None, id="lone-surrogate"),
    pytest.param('{"action": "\\udc00x"}', 400, None, id="lone-low-surrogate"),
    pytest.param("[" * 100_000, 413, None, id="100k-brackets"),
    pytest.param("[" * 30_000, 400, None, id="30k-brackets"),
    pytest.param('{"a": ' * 2000 + "1" + "}" * 2000, 400, None, id="2k-objects"),
]


@pytest.mark.parametrize(("body", "status", "errors"), NOT_JSON)
def test_bodies_that_are_not_strict_json_or_too_deep_are_refused(client, sent, body, status, errors):
    refused(client.post("/collect/1/1/event", data=body.encode(), content_type="application/json"),
            status, errors, sent)
