"""Sentry: off without SENTRY_DSN; with one, a view's and a task's exception reach the DSN's server.

A Django process of its own (the development settings, which read SENTRY_DSN from the
environment as production does) raises in a view and in a task; a local HTTP server stands in
for Sentry and receives the SDK's envelopes.
"""

import gzip
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

SCRIPT = """
import django, sentry_sdk
django.setup()
from wsgiref.util import setup_testing_defaults
from celery import shared_task
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from django.urls import path

def boom(request):
    raise RuntimeError("boom in a view")

urlpatterns = [path("boom", boom)]

@shared_task(name="tests.sentry_boom")
def task_boom():
    raise RuntimeError("boom in a task")

print("initialised" if sentry_sdk.is_initialized() else "not initialised")
environ = {"HTTP_HOST": "localhost", "PATH_INFO": "/boom", "REMOTE_ADDR": "203.0.113.9",
           "HTTP_COOKIE": "theme=secret-cookie"}
setup_testing_defaults(environ)
answered = []
with override_settings(ROOT_URLCONF="__main__"):
    get_wsgi_application()(environ, lambda status, headers, exc_info=None: answered.append(status))
assert answered[0].startswith("500"), answered
task_boom.apply()
sentry_sdk.flush(timeout=10)
"""


@pytest.fixture
def fake_sentry():
    """A local HTTP server that keeps every request body (the SDK's envelopes), decompressed."""
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, received
    server.shutdown()
    server.server_close()


def run_django(environment: dict[str, str], tmp_path: Path) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SENTRY_", "DJANGO_", "DATABASE_", "CELERY_", "REDIS_"))
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DJANGO_READ_DOT_ENV": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "memory://",
        "PYTHONPATH": str(ROOT),
        **environment,
    }
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_a_dsn_sentry_is_not_initialised(fake_sentry, tmp_path):
    _server, received = fake_sentry

    assert run_django({}, tmp_path).strip() == "not initialised"
    assert received == []


def test_with_a_dsn_a_view_and_a_task_exception_are_sent(fake_sentry, tmp_path):
    server, received = fake_sentry
    dsn = f"http://public@127.0.0.1:{server.server_port}/1"

    out = run_django({"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "ci"}, tmp_path)

    assert out.strip() == "initialised"
    sent = b"\n".join(received)
    assert b"boom in a view" in sent
    assert b"boom in a task" in sent
    assert b'"environment":"ci"' in sent.replace(b" ", b"")
    assert b"http://localhost/boom" in sent  # the request is described...
    assert b"203.0.113.9" not in sent and b"secret-cookie" not in sent  # ...without personal data
