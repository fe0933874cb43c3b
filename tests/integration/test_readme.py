"""The README and docs/ as a new user pastes them, against ``make run`` (gunicorn, two workers,
its own broker): every ``curl`` is answered as the page shows, with and without the registry
example; the raw HTTP example too; ``make events`` prints what was sent. A wrong example fails."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import ROOT, MakeRun, make, observe, raw_http

pytestmark = pytest.mark.integration

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Where the pages send events: make run's address, and the production example's.
HOSTS = re.compile(r"https?://(?:127\.0\.0\.1:8000|collector\.example\.com)")
#: A comment line before a curl that only holds under the registry example.
REGISTRY_ONLY = "# with COLLECTOR_REGISTRY=deploy/registry.example.toml make run"
REGISTRY = ROOT / "deploy" / "registry.example.toml"


@dataclass(frozen=True)
class Example:
    """A ``curl`` command of a page and the answer the page shows after it."""

    where: str  # page:line
    command: str
    shown: tuple[str, ...]
    registry_only: bool


def complete(command: str) -> bool:
    """Whether a shell command's lines are all there (no trailing backslash, no open quote)."""
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


def examples(text: str, page: str) -> list[Example]:
    """The curl examples of a page's indented code blocks."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        if not lines[i].startswith("    curl "):
            i += 1
            continue
        start, command = i, lines[i][4:]
        while not complete(command):
            i += 1
            command += "\n" + lines[i][4:]
        i += 1
        shown = []
        while i < len(lines) and lines[i].startswith("    ") and not lines[i].startswith("    curl "):
            shown.append(lines[i][4:])
            i += 1
        only = start > 0 and lines[start - 1].strip() == REGISTRY_ONLY
        found.append(Example(f"{page}:{start + 1}", command, tuple(shown), only))
    return found


EXAMPLES = [e for page in PAGES for e in examples(page.read_text(), page.relative_to(ROOT).as_posix())]


def matches(expected: Any, actual: Any) -> bool:
    """Whether an answer is the one shown: the same JSON, keys in the same order; "…" in a string
    stands for any text, and a "…" alone for any value."""
    if expected == "…":
        return True
    if isinstance(expected, str) and "…" in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("…"))
        return isinstance(actual, str) and re.fullmatch(pattern, actual, re.S) is not None
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and list(expected) == list(actual)
                and all(matches(expected[k], actual[k]) for k in expected))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual, strict=True)))
    return type(expected) is type(actual) and expected == actual


def run(example: Example, base: str) -> str:
    """What the example's command prints against the collector at ``base``."""
    command = HOSTS.sub(base, example.command)
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60).stdout


def differs(example: Example, answer: str) -> str | None:
    """How ``answer`` differs from what the page shows, or None."""
    if not example.shown:
        return "the page shows no answer"
    if example.shown[0].startswith("HTTP/"):  # curl -i: the status line
        status = answer.splitlines()[0] if answer else ""
        return None if status.rstrip("\r") == example.shown[0] else f"got {status!r}"
    try:
        actual = json.loads(answer)
    except ValueError:
        return f"got {answer!r}, not JSON"
    return None if matches(json.loads(" ".join(example.shown)), actual) else f"got {answer}"


SERVERS = ["no registry", "registry example"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MakeRun]]:
    """``make run`` as the README says, and as docs/registry.md says to try the registry example."""
    with (MakeRun(tmp_path_factory.mktemp("make-run")) as plain,
          MakeRun(tmp_path_factory.mktemp("make-run"), COLLECTOR_REGISTRY=str(REGISTRY)) as registered):
        yield dict(zip(SERVERS, (plain, registered), strict=True))


def test_the_pages_have_the_examples_this_file_checks():
    where = {e.where.split(":")[0] for e in EXAMPLES}
    assert {"README.md", "docs/api.md", "docs/registry.md"} <= where
    assert len([e for e in EXAMPLES if e.where.startswith("README.md")]) >= 5
    assert all(e.shown for e in EXAMPLES), [e.where for e in EXAMPLES if not e.shown]


@pytest.mark.parametrize(("server", "example"), [
    pytest.param(server, e, id=f"{server}-{e.where}") for server in SERVERS for e in EXAMPLES
    if server == "registry example" or not e.registry_only])
def test_every_curl_example_is_answered_as_shown(servers, server, example):
    answer = run(example, f"http://127.0.0.1:{servers[server].port}")
    assert differs(example, answer) is None, f"{example.where}: {differs(example, answer)}"


def test_a_wrong_example_fails(servers):
    """The batch example as the README once had it: not JSON as pasted."""
    wrong = Example("old README", "curl -s -X POST http://127.0.0.1:8000/collect/1/1/events \\\n"
                    "  -H 'Content-Type: application/json' -d '[{\"action\":\"view\"}, {…}]'",
                    ('{"accepted": 1, "rejected": [{"index": 0, "errors": "…"}], "events": "…"}',), False)
    answer = run(wrong, f"http://127.0.0.1:{servers['no registry'].port}")
    assert json.loads(answer)["message"].startswith("the body is not valid JSON")
    assert differs(wrong, answer) == f"got {answer}"
    assert not matches({"a": 1, "b": 2}, {"b": 2, "a": 1}), "the order of the fields counts"
    assert not matches([1, True], [1, 1]) and not matches("curl/…", "Wget/1.0")


@pytest.mark.parametrize("server", SERVERS)
def test_the_raw_http_example_is_answered_204(servers, server):
    text = (ROOT / "docs" / "api.md").read_text()
    [block] = re.findall(r"^    (POST /collect/.*?)\n\n    (\{[^\n]*\})$", text, re.M | re.S)
    head, body = block[0].replace("\n    ", "\r\n"), block[1]
    assert re.search(r"Content-Length: (\d+)", head)[1] == str(len(body.encode())), "the length the page gives"  # type: ignore[index]
    answer = raw_http(servers[server].port, f"{head}\r\n\r\n{body}".encode())
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.0 204 NO CONTENT", answer


@pytest.mark.parametrize(("server", "aid", "topic"), [
    ("no registry", "1", "events.1"), ("no registry", "007", "events.7"), ("registry example", "1", "events.1")])
def test_make_events_prints_what_was_sent(servers, server, aid, topic):
    """As the README's Try it: the event posted, then ``make events AID=...`` (007 is account 7; the
    registry example has no account 7)."""
    served = servers[server]
    key = f"readme-{uuid.uuid4()}"
    event = {"action": "view", "object": "form", "vendor": "Vendor A", "product": "Product 1", "instance_id": key}
    sent = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                           f"http://127.0.0.1:{served.port}/collect/{aid}/1/event", "-H",
                           "Content-Type: application/json", "-d", json.dumps(event)],
                          capture_output=True, text=True, timeout=60)
    assert sent.stdout == "204"

    def events() -> subprocess.CompletedProcess[str]:
        return subprocess.run(make("events", f"AID={aid}"), cwd=ROOT, env=served.env, capture_output=True,
                              text=True, timeout=60)

    out = observe(events, lambda out: key in out.stdout, timeout=60)
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["value"]["account_id"] for p in printed if p["key"] == key] == [aid.lstrip("0")]
    assert re.fullmatch(rf"\d+ events? on {re.escape(topic)} at 127\.0\.0\.1:{served.broker_port}\n", out.stderr)
