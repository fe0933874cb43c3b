"""gunicorn settings and the per-process producer lifecycle: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be overridden on the command line (``--bind`` wins over this file). The
collector's own settings (``app/config.py``) give bind, workers and the log format, and a bad
one stops gunicorn here, with the message the app would give.
"""
import contextlib
import hashlib
import math
import os
import shutil
import signal
import sys
import tempfile

# prometheus_client's multi-process mode: each worker writes its figures to files in this
# directory, which must exist, start empty, and be set before any worker imports the client.
_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="collector-metrics-")

# Only now: importing the app imports prometheus_client, which picks its mode at import.
from app.config import ConfigError, Settings  # noqa: E402

try:
    _settings = Settings.from_env()
except ConfigError as _exc:
    sys.exit(f"cannot start: {_exc}")

bind = list(_settings.bind)
workers = _settings.workers
worker_class = "sync"
# A worker silent this long is killed and replaced (a stalled body is cut sooner, by
# COLLECTOR_BODY_TIMEOUT_MS; sync workers keep no connection alive, so no keepalive here).
timeout = 30
# Events are on disk before their 204, so an exit needs no flush to be safe: a worker gives
# Kafka COLLECTOR_SHUTDOWN_FLUSH_MS to acknowledge what is in flight, and gunicorn waits that
# long and 5 s more before it kills the worker.
graceful_timeout = -(-_settings.shutdown_flush_ms // 1000) + 5  # whole seconds, rounded up
# The workers' niceness beside a sender process: each step of it is a factor 1.25 in the kernel's
# share of the CPU, so at this one all the workers together weigh no more than the sender (2 workers: 4; 8: 10).
WORKER_NICENESS = min(19, math.ceil(math.log(max(2, _settings.workers)) / math.log(1.25)))
# COLLECTOR_SENDER=process: the host's sender is a gunicorn dirty app (app/sidecar.py), one process
# that gunicorn starts beside the workers, restarts when it dies, and stops with them (it goes on
# delivering until they have let go of their segments, within COLLECTOR_SHUTDOWN_FLUSH_MS). The
# workers never call it.
if _settings.sender == "process":
    dirty_apps = ["app.sidecar:SenderProcess"]
    dirty_workers = 1
    dirty_graceful_timeout = graceful_timeout
    # gunicorn kills the "orphaned" dirty arbiter a pid file in the temporary directory names, the
    # file named after the process name: each spool directory (one collector) gets a name of its own.
    proc_name = "collector-" + hashlib.sha1(os.path.abspath(_settings.spool_dir).encode()).hexdigest()[:12]
accesslog = "-"
# Several collectors may run on one host (tests, the benchmark); none needs gunicornc.
control_socket_disable = True
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# The collector's own log lines and gunicorn's, in one format on stderr (COLLECTOR_LOG_FORMAT=json
# for one JSON object a line); the access log never holds a request body.
_json = _settings.log_format == "json"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        # kafka-python logs every reconnect attempt as an error; the collector logs what it does about it.
        "kafka": {"level": "CRITICAL"},
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        # The live debugger's page is opened with ?token=: it never reaches the log.
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False, "filters": ["no_token"]},
    },
    "filters": {"one_line": {"()": "app.logs.OneLine"}, "no_token": {"()": "app.logs.NoToken"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if _json else "plain",
                             "filters": ["one_line"]}},
    "formatters": {
        "plain": {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                  "datefmt": "%Y-%m-%d %H:%M:%S %z"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "format": "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}},
    },
}


def on_starting(server):
    """Check the registry once, in the master: a bad one stops the service here."""
    from app.registry import Registry, RegistryError

    try:
        if _settings.registry:
            Registry(_settings.registry)
    except RegistryError as exc:
        server.log.error("cannot start: %s", exc)
        sys.exit(1)
    if _settings.sender == "process":
        _forget_a_stale_arbiter(server)
    if not _settings.registry:
        server.log.warning("COLLECTOR_REGISTRY is not set: every well-formed account and tracker id is "
                           "accepted and gets a topic (fine for development, not for production)")


def _forget_a_stale_arbiter(server):
    """Remove gunicorn's dirty-arbiter pid file when its pid is no dirty arbiter now: gunicorn would
    kill that process, whatever it is, if it runs as the same user (root, say) and reused the pid."""
    pidfile = os.path.join(tempfile.gettempdir(), f"gunicorn-dirty-{server.proc_name}.pid")
    with contextlib.suppress(OSError, ValueError):
        with open(pidfile) as file:
            pid = int(file.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            if b"dirty-arbiter" in file.read():  # setproctitle's name for it: a live orphan, gunicorn's to stop
                return
        os.unlink(pidfile)


def on_reload(server):
    """A HUP renews the web workers, but gunicorn's dirty arbiter keeps its worker: stop the sender
    process too, and the arbiter starts another (the code as it is now), which takes over
    sender.lock once the first has delivered what it could and resigned."""
    arbiter = getattr(server, "dirty_arbiter_pid", 0)
    for stat in os.listdir("/proc") if arbiter else ():
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{stat}/stat") as file:
            if int(file.read().rsplit(")", 1)[1].split()[1]) == arbiter:
                os.kill(int(stat), signal.SIGTERM)


def post_worker_init(worker):
    """Start this worker's log, sender and Kafka producer after the fork (a producer made before it is broken)."""
    from app.delivery import EXTENSION

    pipeline = getattr(worker.wsgi, "extensions", {}).get(EXTENSION)
    if pipeline is not None:  # another app under this config (bench/reference.py) has none
        if _settings.sender == "process":
            # Delivery before acceptance: under a load the cores cannot serve, the sender process
            # (at the default niceness) gets as much of them as all the workers together, so the
            # log does not grow while Kafka answers. Batches were delivered at 0.88-0.91 of their
            # accepted rate without this, 0.98-1.00 with it, single events as fast (docs/benchmarks.md).
            os.nice(WORKER_NICENESS)
        pipeline.start()


def on_exit(server):
    """Remove the metrics directory this config made."""
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def child_exit(server, worker):
    """Drop a gone worker's live gauges from the metrics (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def dirty_worker_exit(arbiter, worker):
    """Drop the gone sender process's live gauges from the metrics (its counters stay)."""
    child_exit(arbiter, worker)


def worker_exit(server, worker):
    """Let Kafka acknowledge what is in flight, within the shutdown deadline; the rest stays in the log."""
    from app.delivery import EXTENSION

    pipeline = getattr(getattr(worker, "wsgi", None), "extensions", {}).get(EXTENSION)
    if pipeline is not None:
        pipeline.close()
