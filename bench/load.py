"""The load and the servers of the benchmarks: the apps served by gunicorn, wrk's script and
figures, and what ``/proc`` says about the processes (CPU, memory)."""
from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dev.broker import free_port, wait_for_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
WARM_AID = "999999999999"  # the warm-up's account: its events are not counted
VARIANT_CONNECTIONS = 16


@dataclass(frozen=True)
class Target:
    """One app to drive: how gunicorn loads it, what wrk posts where, whether its events must reach Kafka."""

    name: str
    app: str
    path: str  # "{aid}" is filled in with a fresh account id per run
    kafka: bool
    body: str = "EVENT"  # a Lua expression for the request body (see LUA: EVENT, batch(n))
    status: int = 204  # the answer of a request whose events were all queued
    events: int = 1  # events per request
    env: tuple[tuple[str, str], ...] = ()  # settings of this variant
    accounts: int = 1  # events spread over this many accounts, in turn
    baseline: bool = False  # served from the worktree of --baseline


TARGETS = [
    Target("collector", "wsgi:app", "/collect/{aid}/1/event", kafka=True),
    Target("reference", "bench.reference:app", "/collect/{aid}/1/event", kafka=False,
           env=(("COLLECTOR_SENDER", "worker"),)),  # no sender process beside a bare route
    Target("batches of 50", "wsgi:app", "/collect/{aid}/1/events", True, "batch(50)", 200, 50),
]



LUA = r"""-- written by bench/run.py: POST events with unique instance ids, count the @STATUS@ answers exactly
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local EVENT_HEAD = '{"action":"view","object":"form","vendor":"Vendor A","product":"Product 1","instance_id":"'
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  sent, ok, other = 0, 0, 0
end

function request()
  sent = sent + 1
  local uid = "bench-" .. tid .. "-" .. sent
  local EVENT = EVENT_HEAD .. uid .. '"}'
  local function batch(n)
    local events = {}
    for i = 1, n do events[i] = EVENT_HEAD .. uid .. "-" .. i .. '"}' end
    return "[" .. table.concat(events, ",") .. "]"
  end
  return wrk.format(nil, @PATH@, nil, @BODY@)
end

function response(status, headers, body)
  if status == @STATUS@ then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_sum, other_sum = 0, 0
  for _, thread in ipairs(threads) do
    ok_sum = ok_sum + thread:get("ok")
    other_sum = other_sum + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format("BENCH ok=%d other=%d duration_us=%d p50_us=%d p99_us=%d socket_errors=%d\n",
    ok_sum, other_sum, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""



def script_for(target: Target, aid: str) -> str:
    """The Lua script: the body, the status counted as queued, and the path when accounts take turns."""
    path = "nil" if target.accounts == 1 else (
        f'"/collect/" .. ({int(aid)} + sent % {target.accounts}) .. "/1/{target.path.rsplit("/", 1)[1]}"')
    return LUA.replace("@BODY@", target.body).replace("@STATUS@", str(target.status)).replace("@PATH@", path)



# -- /proc --------------------------------------------------------------------------------

def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first); [] if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []



def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0



def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found



def descendants(pid: int) -> list[int]:
    """The pids below ``pid``: its children, theirs, and so on (gunicorn's sender process is a grandchild)."""
    found, todo = [], children(pid)
    while todo:
        found.append(todo.pop())
        todo += children(found[-1])
    return found


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process, in MiB (0 if it is gone)."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0.0
    return int(match.group(1)) / 1024 if match else 0.0



def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK



def usage(gunicorn: list[int], broker: int) -> dict[str, float]:
    """CPU seconds so far of gunicorn's processes, the broker, our finished children (wrk), the machine; the time."""
    finished = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"gunicorn": sum(map(cpu_seconds, gunicorn)), "broker": cpu_seconds(broker),
            "wrk": finished.ru_utime + finished.ru_stime, "machine": machine_busy_seconds(), "time": time.monotonic()}



# -- the servers and the load ----------------------------------------------------------------

class Gunicorn:
    """``gunicorn -c gunicorn.conf.py APP`` with only ``--bind`` overridden, its log in a file."""

    def __init__(self, app: str, env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.app, self.env, self.log, self.cwd = app, env, log, cwd
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        """Start it; return once the port listens and every worker is forked."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{self.port}", self.app],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, proc=self.proc)
        # the web workers, and with a sender process, gunicorn's dirty arbiter and that process
        sender = (self.env.get("COLLECTOR_SENDER", "process") == "process" and self.app == "wsgi:app"
                  and "--dirty-workers 0" not in self.env.get("GUNICORN_CMD_ARGS", ""))
        expected = int(self.env.get("WEB_CONCURRENCY", "2")) + 2 * sender
        deadline = time.monotonic() + 30
        while len(self.workers()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The pids of every process below gunicorn's master now: its workers, and its sender process."""
        assert self.proc is not None
        return descendants(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM: the workers flush what they hold to Kafka (or the spool) and exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk_command(url: str, script: Path, connections: int, seconds: int) -> list[str]:
    """The wrk command line for one run."""
    return ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "--latency", "-s", str(script), url]



def wrk_figures(stdout: str) -> dict[str, int]:
    """The numbers the Lua script's done() prints."""
    match = re.search(r"^BENCH (.*)$", stdout, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{stdout}")
    return {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}

