"""The commands of the Makefile that need no broker: a plain ``make`` prints what there is, and
``make events`` reads the topic the collector writes for the account id as typed."""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.helpers import ROOT, environment, make


def described_targets() -> list[str]:
    """The Makefile's targets that carry a ``##`` description."""
    return re.findall(r"^([a-z]+):.*## ", (ROOT / "Makefile").read_text(), re.M)


@pytest.mark.parametrize("command", [["make"], ["make", "help"]], ids=["plain make", "make help"])
def test_make_prints_every_command_with_what_it_does(command):
    out = subprocess.run([*command, "-s"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = re.findall(r"^  make (\w+) +(\S.*)$", out.stdout, re.M)
    assert [target for target, _ in listed] == described_targets()
    assert {"run", "test", "events", "lint", "install", "help"} <= set(described_targets())
    assert dict(listed)["run"].startswith("serve on http://127.0.0.1:8000")


@pytest.mark.parametrize(("aid", "topic"), [("007", "events.7"), ("1", "events.1"),
                                            ("3F2504E0-4F89-11D3-9A0C-0305E82C3301",
                                             "events.3f2504e0-4f89-11d3-9a0c-0305e82c3301")])
def test_make_events_reads_the_topic_the_collector_writes(aid, topic):
    """The account id is spelt as the collector spells it; without a broker it says so at once
    (reading the events back: integration/test_readme.py)."""
    out = subprocess.run(make("events", f"AID={aid}"), cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=environment(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"))
    assert out.returncode != 0
    assert out.stderr.startswith(f"cannot read {topic}: nothing answers at 127.0.0.1:9 (start make run"), out.stderr


def test_make_events_refuses_an_id_the_collector_refuses():
    out = subprocess.run(make("events", "AID=0x1"), cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=environment())
    assert out.returncode != 0
    assert "the account id '0x1' must be a positive decimal number or a UUID" in out.stderr
