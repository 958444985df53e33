"""Logs: JSON lines with an ISO 8601 time, from gunicorn (its access log too) and the worker.

gunicorn runs for real (`gunicorn -c gunicorn.conf.py config.wsgi`, the Procfile's web line) on
the test database, and so does a worker process: a webhook posted to gunicorn with an
X-Request-ID is followed through its access line to the lines of the tasks it caused.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import requests

from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import Payment, SandboxCharge
from payments.registry import gateway_for
from tests.conftest import child_env, wait_for
from tests.payments.test_sandbox_e2e import start_sandbox_payment

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def json_lines(text: str) -> list[dict]:
    """Every line of `text` as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_iso_time(line: dict) -> None:
    time = datetime.fromisoformat(line["time"])
    assert time.tzinfo is not None, line["time"]


class Gunicorn:
    """The Procfile's web line on a free port of this host, its stdout and stderr kept apart."""

    def __init__(self, workdir: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.stdout, self.stderr = workdir / "access.log", workdir / "error.log"
        env = child_env(
            WEB_BIND="127.0.0.1",
            WEB_PORT=str(port),
            WEB_CONCURRENCY="1",
            LOG_LEVEL="INFO",
            # A directory that does not exist yet: gunicorn makes it for its workers' metrics.
            PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics" / "not-made-yet"),
        )
        self.metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "config.wsgi"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        try:
            wait_for(lambda: self.process.poll() is not None or self._answers(), timeout=30, what="gunicorn")
            assert self.process.poll() is None, self.stderr.read_text()
        except BaseException:  # no gunicorn left behind when it does not come up
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).ok
        except requests.RequestException:  # not listening yet, or its worker still booting
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def gunicorn(tmp_path):
    server = Gunicorn(tmp_path)
    yield server
    server.stop()


def test_gunicorn_writes_one_json_access_line_per_request_with_its_request_id(gunicorn):
    given = requests.get(f"{gunicorn.url}/healthz", headers={"X-Request-ID": "access-given-1"}, timeout=10)
    missing = requests.get(f"{gunicorn.url}/api/no-such-thing?page=2", timeout=10)
    gunicorn.stop()

    assert given.headers["X-Request-ID"] == "access-given-1"
    assert list(gunicorn.metrics_dir.glob("*.db"))  # the workers' request metrics, in the made directory
    access = json_lines(gunicorn.stdout.read_text())
    by_id = {}
    for line in access:
        assert line["logger"] == "gunicorn.access"
        assert_iso_time(line)
        by_id.setdefault(line["request_id"], []).append(line)
    ((healthz,),) = [by_id[given.headers["X-Request-ID"]]]
    ((unknown,),) = [by_id[missing.headers["X-Request-ID"]]]  # an id of the server's own
    assert (healthz["method"], healthz["path"], healthz["status"]) == ("GET", "/healthz", 200)
    assert (unknown["path"], unknown["query"], unknown["status"]) == ("/api/no-such-thing", "page=2", 404)
    for line in (healthz, unknown):
        assert line["remote_addr"] == "127.0.0.1"
        assert line["user_agent"].startswith("python-requests/")
        assert line["duration_ms"] >= 0
    # gunicorn's own lines (and Django's, and Python's warnings) are JSON too.
    errors = json_lines(gunicorn.stderr.read_text())
    assert any(line["logger"] == "gunicorn.error" for line in errors)
    for line in errors:
        assert_iso_time(line)


def test_the_request_id_of_a_webhook_is_on_the_worker_lines_of_the_tasks_it_caused(
    gunicorn, worker_processes, celery_app_without_worker, capfd
):
    """The request stores the webhook and sends the dispatch task; the worker's dispatch sends the
    processing task, which completes the payment. Both tasks log the request's id."""
    celery_app_without_worker.control.purge()
    worker_processes("payments", env={"LOG_LEVEL": "INFO"})  # its stderr is this test's (capfd)
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")
    gateway = gateway_for("sandbox")
    body = gateway.webhook_body(SandboxCharge.objects.get(reference=payment.gateway_reference))

    answer = requests.post(
        f"{gunicorn.url}/api/payments/webhook/sandbox",
        data=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, gateway.secret),
            "X-Request-ID": "webhook-carried-1",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "succeeded", what="the webhook's effect")
    gunicorn.stop()

    (access,) = [line for line in json_lines(gunicorn.stdout.read_text()) if line["method"] == "POST"]
    assert access["request_id"] == "webhook-carried-1"
    worker_lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if '"task_name": "payments.' in line
    ]
    carried = {line["task_name"] for line in worker_lines if line["request_id"] == "webhook-carried-1"}
    assert carried >= {"payments.webhooks_dispatch", "payments.webhook_process"}
    for line in worker_lines:
        assert_iso_time(line)
