"""The request body: read straight from the WSGI input, inflated, parsed as JSON; a 4xx that
says what is wrong otherwise."""
from __future__ import annotations

import socket
import struct
import zlib
from typing import Any

import orjson
from flask import Request

from .errors import APIError

FORM = "application/x-www-form-urlencoded"
#: Where a request's environ keeps its body once read (inflated when it could be), for a reject's
#: excerpt: None while a read failed.
BODY = "collector.body"
#: Content-Type values taken without parsing them (what curl, fetch and sendBeacon send).
PLAIN_TYPES = frozenset({"", "application/json", "text/plain", "text/plain;charset=UTF-8",
                         "application/json; charset=utf-8", "application/json;charset=UTF-8"})


def json_type(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words: "an array", not "list"."""
    for kind, name in ((bool, "a boolean"), (dict, "an object"), (list, "an array"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return "null"


def read_body(req: Request, limit: int, timeout: int) -> Any:
    """The request body as JSON; a 4xx that says what is wrong otherwise."""
    environ = req.environ
    if environ.get("CONTENT_TYPE", "") not in PLAIN_TYPES:
        mimetype = req.mimetype
        if mimetype not in ("", "application/json", "text/plain") and not mimetype.endswith("+json"):
            hint = " (curl -d sends that: add -H 'Content-Type: application/json')" if mimetype == FORM else ""
            raise APIError(415, f"Content-Type must be application/json or text/plain, not {mimetype}{hint}")
        charset = req.mimetype_params.get("charset", "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            raise APIError(415, f"the body must be UTF-8, not {charset}")
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise APIError(415, f"Content-Encoding must be gzip, deflate or identity, not {encoding}")
    data = read_raw_body(req, limit, timeout)
    if encoding != "identity":
        data = environ[BODY] = inflate(data, encoding, limit)
    if not data:
        raise APIError(400, "the body is empty: send the event as a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode()
        except UnicodeDecodeError as bad:
            raise APIError(400, f"the body is not valid UTF-8 (byte {bad.start})") from None
        raise APIError(400, f"the body is not valid JSON: {exc}") from None
    return body


def read_raw_body(req: Request, limit: int, timeout: int) -> bytes:
    """The body's bytes, read straight from the WSGI input (Werkzeug's wrapping of it cost more
    than the rest of the view); a 413 past ``limit``, a 408 when it stops arriving within
    ``timeout`` ms."""
    environ = req.environ
    length = req.content_length
    if length is not None and length > limit:
        raise APIError(413, f"the body is larger than the limit of {limit} bytes")
    if length is None and not environ.get("wsgi.input_terminated"):
        environ[BODY] = b""
        return b""  # no length, and a server that cannot tell where the body ends
    time_out(environ, timeout)
    environ[BODY] = None
    try:
        data: bytes = environ["wsgi.input"].read(limit + 1 if length is None else length)
    except OSError:
        raise APIError(408, f"the body ended early or did not arrive within {timeout} ms") from None
    except Exception as exc:  # noqa: BLE001 - the server's parse errors (gunicorn's ParseException)
        raise APIError(400, f"the body could not be read: {type(exc).__name__}: {exc}") from None
    environ[BODY] = data
    if len(data) > limit:
        raise APIError(413, f"the body is larger than the limit of {limit} bytes")
    if length is not None and len(data) < length:
        raise APIError(408, f"the body ended early or did not arrive within {timeout} ms")
    return data


def time_out(environ: dict[str, Any], timeout: int) -> None:
    """Let a read of the body wait at most ``timeout`` ms: a client that stops sending mid-body
    frees the worker after this."""
    if (sock := environ.get("gunicorn.socket")) is not None:
        # The kernel's receive timeout rather than settimeout's, which turns the socket
        # non-blocking and makes every later send of the answer poll first.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", *divmod(timeout * 1000, 1_000_000)))


def peek(req: Request, size: int, timeout: int) -> tuple[bytes | None, int | None]:
    """A refused request's body, as read (inflated) or else its first ``size`` bytes read now,
    and the body's whole size: None where a read failed or the size is not known."""
    environ = req.environ
    if BODY in environ:
        data = environ[BODY]
        return data, None if data is None else len(data)
    environ[BODY] = None
    length = req.content_length
    if length is None and not environ.get("wsgi.input_terminated"):
        return None, None  # a server that cannot tell where the body ends: it might never
    time_out(environ, timeout)
    try:
        data = environ["wsgi.input"].read(size if length is None else min(size, length))
    except Exception:  # noqa: BLE001 - a body cut short or malformed: the excerpt is only missing
        return None, length
    return data, length


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip or deflate body, never to more than ``limit`` bytes (a 413 past it)."""
    # HTTP's "deflate" is zlib-wrapped (RFC 9110), but some clients send it raw: try both.
    for wbits in (16 + zlib.MAX_WBITS,) if encoding == "gzip" else (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            error = str(exc)
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise APIError(413, f"the body inflates to more than the limit of {limit} bytes")
        if not inflater.eof or inflater.unused_data:
            raise APIError(400, f"the {encoding} body is truncated or has trailing data")
        return out
    raise APIError(400, f"the body is not valid {encoding}: {error}")
