"""The live debugger: GET /debug/{aid}/{tid}, a page that shows a tracker's last events as they
reached Kafka and its last rejects, from GET /debug/{aid}/{tid}/records (read by app/readback.py).

Off unless COLLECTOR_DEBUG_TOKEN is set; every request carries that token."""
from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, render_template_string, request

from . import readback
from .collect import begin
from .config import get_settings
from .delivery import get_pipeline
from .errors import APIError

bp = Blueprint("debug", __name__)
REFRESH_MS = 1000  # the page's tick; a read costs a worker about 10 ms
BACK_OFF_MS = 5000  # the tick after Kafka did not answer (503), which held a worker up to WAIT_S
WAIT_S = readback.BUDGET_S + 0.2  # the reader's calls time out at its budget: a little more to hear so
#: Where the caller's values end up, only ever as text (textContent); where script comes from, only this page.
PAGE_POLICY = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    """Register the debugger's routes on ``app`` (they answer 404 while it is off)."""
    app.register_blueprint(bp)


@bp.after_request
def private(response: Response) -> Response:
    """Every answer, errors too: never stored, and the address (``?token=``) never sent on."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
    return response


def authorized(aid: str, tid: str) -> tuple[str, str]:
    """The canonical ids of a request that carries the token: 404 while the debugger is off, 401
    without the token, then collect's own 404 for an id that is malformed or not registered (after
    the token, so that the registry's accounts are not told to whoever asks)."""
    token = get_settings().debug_token
    if token is None:
        raise APIError(404, "the live debugger is off: set COLLECTOR_DEBUG_TOKEN to turn it on")
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        sent = request.args.get("token", "")
    if not sent:
        raise unauthorized("the live debugger needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN")
    # In constant time, so that how long a refusal takes tells nothing of the token.
    if not hmac.compare_digest(sent.strip().encode(), token.encode()):
        raise unauthorized("the live debugger's token is not this one")
    call = begin(aid, tid)
    return call.account, call.tracker


def unauthorized(message: str) -> APIError:
    return APIError(401, message, headers={"WWW-Authenticate": 'Bearer realm="collector debugger"'})


@bp.get("/debug/<aid>/<tid>")
def page(aid: str, tid: str) -> Response:
    """The live debugger's page: the tracker's last events and rejects, newest first, refreshed every second."""
    account, tracker = authorized(aid, tid)
    nonce = secrets.token_urlsafe(16)
    response = Response(render_template_string(PAGE, account=account, tracker=tracker, nonce=nonce,
                                                refresh_ms=REFRESH_MS, back_off_ms=BACK_OFF_MS), mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY.format(nonce=nonce)
    return response


@bp.get("/debug/<aid>/<tid>/records")
def records(aid: str, tid: str) -> Response:
    """The tracker's last events as read back from Kafka and its last rejects, newest first."""
    account, tracker = authorized(aid, tid)
    try:
        found = readback.start(get_settings(), get_pipeline().clients.consumer, account, tracker)
    except readback.Busy:
        raise APIError(429, "another debugger read is under way on this host: try again in a second",
                       headers={"Retry-After": "1"}) from None
    except OSError as exc:
        raise APIError(503, f"the debugger cannot take its lock: {exc.strerror}",
                       headers={"Retry-After": "2"}) from None
    events, rejects, error = found.taken(WAIT_S)
    if events is None:
        raise APIError(503, f"the debugger read nothing: {error}", headers={"Retry-After": "2"})
    answer: dict[str, Any] = {"events": events, "rejects": rejects}  # rejects None: not read in time (see note)
    if error:
        answer["note"] = error
    return jsonify(answer)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Live debugger: account {{ account }}, tracker {{ tracker }}</title>
<style nonce="{{ nonce }}">
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; } h3 { font-size: 1em; margin: 0 0 .3em; }
#status { padding: .4em .6em; background: #eef; } #status.error { background: #fdd; }
main { display: flex; gap: 2em; } section { flex: 1; min-width: 0; }
ol { list-style: none; padding: 0; } li { border: 1px solid #ccc; border-radius: 4px; padding: .5em; margin: .5em 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0 1em; margin: 0; } dt { color: #666; }
dd { margin: 0; overflow-wrap: anywhere; } pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f6f6; }
.reject h3 { color: #a00; } .none { color: #888; border: none; }
</style>
</head>
<body>
<h1>Live debugger: account {{ account }}, tracker {{ tracker }}</h1>
<p id="status">loading…</p>
<main>
<section><h2>Events accepted, as they reached Kafka</h2><ol id="events"></ol></section>
<section><h2>Rejects</h2><ol id="rejects"></ol></section>
</main>
<script nonce="{{ nonce }}">
"use strict";
// Every value shown comes from a caller (a reject holds an attacker's body): textContent only.
const token = new URLSearchParams(location.search).get("token");
const url = location.pathname.replace(/\\/$/, "") + "/records";
const opened = new Set();  // the records whose whole value is shown, kept across refreshes
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function text(value) { return typeof value === "string" ? value : JSON.stringify(value); }
function fields(pairs) {
  const dl = el("dl");
  for (const [name, value] of pairs) {
    if (value !== undefined && value !== null) dl.append(el("dt", name), el("dd", text(value)));
  }
  return dl;
}
function whole(item, key) {
  const details = el("details");
  details.open = opened.has(key);
  details.addEventListener("toggle", () => details.open ? opened.add(key) : opened.delete(key));
  details.append(el("summary", "the whole record"), el("pre", JSON.stringify(item, null, 2)));
  return details;
}
function eventItem(item) {
  const v = item.value || {}, li = el("li", null, "event");
  li.append(el("h3", text(v.received_at) + " " + text(v.action) + " " + text(v.object)),
            fields(["event_id", "action", "object", "vendor", "product", "instance_id"].map(n => [n, v[n]])),
            whole(item, "e" + item.partition + ":" + item.offset));
  return li;
}
function rejectItem(item) {
  const v = item.value || {}, li = el("li", null, "reject");
  const errors = v.errors && typeof v.errors === "object" ? Object.entries(v.errors) : [];
  li.append(el("h3", text(v.received_at) + " " + text(v.status)), el("p", v.message),
            fields(errors.map(([name, why]) => [name, Array.isArray(why) ? why.map(text).join("; ") : why])),
            fields([["body", v.body], ["body bytes", v.body_bytes], ["user agent", v.user_agent], ["ip", v.ip]]),
            whole(item, "r" + item.partition + ":" + item.offset));
  return li;
}
function show(id, items, make, none) {
  document.getElementById(id).replaceChildren(...(items.length ? items.map(make) : [el("li", none, "none")]));
}
function status(message, error) {
  const line = document.getElementById("status");
  line.textContent = message;
  line.className = error ? "error" : "";
}
// Whether the collector answered well enough to ask again at the usual tick.
async function refresh() {
  let answer, body = null;
  try {
    answer = await fetch(url, {headers: token ? {Authorization: "Bearer " + token} : {}, cache: "no-store"});
    body = await answer.json();
  } catch (e) {
    if (!answer) return status("cannot reach the collector: " + e, true);
  }
  if (!answer.ok) {
    status(answer.status + ": " + (body && body.message || answer.statusText), true);
    return answer.status !== 503;
  }
  show("events", body.events, eventItem, "no events of this tracker yet");
  if (body.rejects) show("rejects", body.rejects, rejectItem, "no rejects of this tracker");
  const count = (items, noun) => items.length + " " + noun + (items.length === 1 ? "" : "s");
  const rejects = body.rejects ? count(body.rejects, "reject") : "rejects not read";
  status("updated " + new Date().toLocaleTimeString() + ": " + count(body.events, "event") + ", " + rejects +
         (body.note ? " (" + body.note + ")" : ""));
  return true;
}
async function loop() {
  setTimeout(loop, await refresh() ? {{ refresh_ms }} : {{ back_off_ms }});
}
loop();
</script>
</body>
</html>
"""
