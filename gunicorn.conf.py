"""gunicorn's configuration: `gunicorn -c gunicorn.conf.py config.wsgi` (the Procfile's web line).

Listens on WEB_BIND:WEB_PORT (127.0.0.1:8000) with WEB_CONCURRENCY sync workers (4) and a
30-second request timeout. Logs like every other process (core.logging.json_formatter): its
own lines as JSON on stderr, and one JSON object per request on stdout with the method, path,
status, duration, client address, user agent and the request id (the X-Request-ID header that
core.logging.RequestIdMiddleware answers with), so an access line leads to the request's other
lines and to the tasks it sent.

Prometheus' multiprocess mode needs one directory shared by the workers: a fresh temporary one
unless PROMETHEUS_MULTIPROC_DIR names one, which is emptied at start; a dead worker's files
are marked as such.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

from core.logging import json_formatter

_host = os.environ.get("WEB_BIND", "127.0.0.1").strip("[]")
_port = os.environ.get("WEB_PORT", "8000")
bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"
# Sync workers wait on PostgreSQL's commits and on gateways: about two per core.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
timeout = 30
# gunicorn's control socket ($HOME/.gunicorn/gunicorn.ctl) is shared by every gunicorn of a
# user on the host; nothing here uses it.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()


class JsonAccessLogger(Logger):
    """One access line per request, its fields as JSON keys rather than Apache's format."""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        self.access_log.info(
            '"%s %s" %s',
            atoms["m"],
            atoms["U"],
            atoms["s"],
            extra={
                "method": atoms["m"],
                "path": atoms["U"],
                "query": atoms["q"],
                "status": int(atoms["s"]),
                "duration_ms": round(atoms["D"] / 1000, 1),
                "remote_addr": atoms["h"],
                "user_agent": atoms["a"],
                "request_id": atoms.get("{x-request-id}o"),
            },
        )


logger_class = JsonAccessLogger
logging.captureWarnings(True)  # Python's warnings as JSON lines too (py.warnings), not plain text
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": json_formatter()},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "root": {"level": loglevel.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}


def on_starting(server):
    """In the master, before any worker forks: the workers inherit the metrics directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):  # left by the previous run
            stale.unlink()
    else:
        server.prometheus_temporary_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="fulfil-prometheus-"
        )


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    temporary = getattr(server, "prometheus_temporary_dir", None)
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)
