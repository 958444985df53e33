"""Production settings: no default secrets, and `check --deploy` is clean with them set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.prod",
    "DJANGO_SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-0123456789",
    "ALLOWED_HOSTS": "shop.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
    "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "PAYMENT_ENV": "production",
    "PAYMENT_DEFAULT_GATEWAY": "paystack",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PROD_ENV and not k.startswith("DJANGO")}
    return subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean | env | {"DJANGO_READ_DOT_ENV": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prod_check_deploy_reports_nothing():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    ["DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "PAYMENT_ENV"],
)
def test_prod_refuses_to_start_without(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


def test_dev_defaults_to_the_embedded_services():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; from config.celery import app; "
        "print(s.DATABASES['default']['ENGINE'], app.conf.broker_url, s.CACHES['default']['BACKEND'])",
        env={"DJANGO_SETTINGS_MODULE": "config.settings.dev"},
    )

    assert result.returncode == 0, result.stderr
    engine, broker, cache = result.stdout.strip().splitlines()[-1].split()
    assert engine == "django.db.backends.sqlite3"
    assert broker.startswith("filesystem://")
    assert cache.endswith("LocMemCache")


def test_procfile_worker_consumes_every_declared_queue():
    from config.celery import QUEUE_NAMES

    worker_line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("worker:")
    )
    queues = worker_line.split(" -Q ", 1)[1].split()[0].split(",")

    assert sorted(queues) == sorted(QUEUE_NAMES)


def test_prod_refuses_the_sandbox_as_the_default_gateway_of_real_money():
    result = manage("check", env=PROD_ENV | {"PAYMENT_DEFAULT_GATEWAY": "sandbox"})

    assert result.returncode != 0
    assert "PAYMENT_DEFAULT_GATEWAY" in result.stderr
