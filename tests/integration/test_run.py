"""``make run`` as a user types it: its own broker, or none at all (the README's examples against
it: test_readme.py)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess

import pytest

from dev.broker import free_port
from tests.helpers import ROOT, environment, make

pytestmark = pytest.mark.integration


def test_make_run_never_uses_a_broker_it_did_not_start(tmp_path):
    """Something else holds BROKER_PORT (another broker, a make run left running): make run stops,
    names the port and says how to choose another, and serves nothing."""
    bind = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = environment(BROKER_PORT=str(port), COLLECTOR_BIND=f"127.0.0.1:{bind}",
                          COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"))
        proc = subprocess.Popen(make("run"), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=60)
        finally:  # had it served, it would serve until stopped
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert f"cannot start the embedded broker: port {port} on 127.0.0.1 is taken" in err
    assert "choose another port: BROKER_PORT=" in err and f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port} make run" in err
    assert "Listening at" not in out + err, "gunicorn never started"
