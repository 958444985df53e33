"""Where each process takes its configuration from.

- The test suite: from TEST_* variables only, never from the shell's service variables or a
  .env file (config/settings/test.py).
- `make run`, its processes and `make smoke`: from the environment with .env under it
  (scripts/dotenv.py), so that a second shell sees what `make run` uses; SITE_URL follows
  the web process's WEB_PORT unless it is set.

Each test runs real processes in a copy of the project, so that it may write the copy's .env.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from config.celery import app

ROOT = Path(__file__).resolve().parents[2]
COPY_IGNORES = shutil.ignore_patterns(
    ".venv", ".git", "var", "staticfiles", "__pycache__", ".hypothesis", ".*_cache", ".env", "*.sqlite3"
)
# Service variables a developer's shell (or .env) may hold while `make run` uses real services.
# Nothing listens on port 1: whatever reads one of these fails at once.
WRONG_SHELL = {
    "DATABASE_URL": "postgres://shell@127.0.0.1:1/shell_database",
    "CELERY_BROKER_URL": "amqp://shell:shell@127.0.0.1:1/shell",
    "CELERY_BROKER_READ_URL": "amqp://shell:shell@127.0.0.1:1/shell-read",
    "CELERY_BROKER_WRITE_URL": "amqp://shell:shell@127.0.0.1:1/shell-write",
    "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/1",
    "REDIS_URL": "redis://127.0.0.1:1/2",
    "EVENTS_BROKER_URL": "amqp://shell:shell@127.0.0.1:1/shell-events",
    "RABBITMQ_MANAGEMENT_URL": "http://shell:shell@127.0.0.1:1/api/",
    "SITE_URL": "http://shell.invalid",
    "PAYMENT_ENV": "production",
    "DJANGO_READ_DOT_ENV": "1",
}
WRONG_DOT_ENV = """\
DJANGO_SETTINGS_MODULE=config.settings.dev
DATABASE_URL=postgres://dotenv@127.0.0.1:1/dotenv_database
CELERY_BROKER_URL=amqp://dotenv:dotenv@127.0.0.1:1/dotenv
CELERY_RESULT_BACKEND=redis://127.0.0.1:1/3
REDIS_URL=redis://127.0.0.1:1/4
EVENTS_BROKER_URL=amqp://dotenv:dotenv@127.0.0.1:1/dotenv-events
SITE_URL=http://dotenv.invalid
PAYMENT_ENV=test
BOOKING_DEPOSIT_PERCENT=99
"""
SETTINGS_PROBE = """
import json, os
import django
django.setup()
from django.conf import settings
from config.celery import app
db = settings.DATABASES["default"]
print(json.dumps({
    "database": f"{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    "broker": app.conf.broker_url,
    "broker_read": app.conf.broker_read_url,
    "broker_write": app.conf.broker_write_url,
    "result_backend": app.conf.result_backend,
    "cache": settings.CACHES["default"]["LOCATION"],
    "events_broker": settings.EVENTS_BROKER_URL,
    "rabbitmq_management": settings.RABBITMQ_MANAGEMENT_URL,
    "site_url": settings.SITE_URL,
    "payment_env": settings.PAYMENT_ENV,
    "deposit_percent": settings.BOOKING_DEPOSIT_PERCENT,
    "left_for_child_processes": sorted(n for n in os.environ if n in %r),
}))
"""


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project's source (no .venv, var/ or .env), run with this interpreter."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORES)
    return copy


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Django's or the tests' variables, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TEST_"))}
    return base | extra


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(  # noqa: S603 - our interpreter or make, fixed arguments
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def database_url() -> str:
    """The URL of the database this test run uses (pytest's test_... database)."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


# --- The test suite reads TEST_* only ---------------------------------------------------------
def test_the_test_settings_take_their_services_from_test_variables_not_the_shell_or_dotenv(project):
    (project / ".env").write_text(WRONG_DOT_ENV)
    test_variables = {
        "TEST_DATABASE_URL": "postgres://tester@127.0.0.1:5432/from_test_variables",
        "TEST_CELERY_BROKER_URL": "amqp://tester:secret@127.0.0.1:5672/from-test-variables",
        "TEST_REDIS_URL": "redis://127.0.0.1:6379/11",
    }
    env = clean_environment(**WRONG_SHELL, **test_variables, DJANGO_SETTINGS_MODULE="config.settings.test")

    probe = SETTINGS_PROBE % (tuple(settings.SHELL_SERVICE_VARIABLES),)
    seen = json.loads(run([sys.executable, "-c", probe], cwd=project, env=env).splitlines()[-1])

    broker = test_variables["TEST_CELERY_BROKER_URL"]
    assert seen == {
        "database": "tester@127.0.0.1:5432/from_test_variables",
        "broker": broker,
        "broker_read": broker,
        "broker_write": broker,
        "result_backend": None,
        "cache": test_variables["TEST_REDIS_URL"],
        "events_broker": "",
        "rabbitmq_management": "",
        "site_url": "http://127.0.0.1:8000",
        "payment_env": "mock",
        "deposit_percent": 30,
        "left_for_child_processes": [],  # worker processes the tests start inherit no service
    }


@pytest.mark.worker
@pytest.mark.timeout(300)
@pytest.mark.django_db
def test_worker_tests_pass_in_a_shell_with_other_service_variables_and_a_dotenv(project):
    """`make test` (pytest --ds=config.settings.test) in the shell that runs `make run` against
    real services: a task goes through an in-process worker and a worker process."""
    (project / ".env").write_text(WRONG_DOT_ENV)
    env = clean_environment(
        **WRONG_SHELL,
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        # This run's own services; a database of its own (pytest creates test_<name>).
        TEST_DATABASE_URL=f"{database_url()}_shell_check",
        TEST_CELERY_BROKER_URL=app.conf.broker_url,
        TEST_REDIS_URL=settings.REDIS_URL,
    )

    out = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--ds=config.settings.test",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/core/test_celery.py::test_task_goes_through_rabbitmq_to_the_worker_and_writes_postgres",
            "tests/core/test_celery.py::test_a_worker_process_runs_a_task_from_the_test_broker_into_the_test_database",
        ],
        cwd=project,
        env=env,
        timeout=280,
    )

    assert "2 passed" in out


# --- make run, its processes and make smoke: the environment, then .env ----------------------
@pytest.mark.parametrize(
    ("environment", "site_url"),
    [
        ({"WEB_PORT": "8010"}, "http://127.0.0.1:8010"),
        ({"WEB_BIND": "0.0.0.0", "WEB_PORT": "8020"}, "http://127.0.0.1:8020"),  # noqa: S104
        ({"WEB_BIND": "::1", "WEB_PORT": "8030"}, "http://[::1]:8030"),
        ({"WEB_PORT": "8010", "SITE_URL": "https://shop.example.com"}, "https://shop.example.com"),
        ({}, "http://127.0.0.1:8000"),
    ],
)
def test_site_url_follows_the_web_port_unless_it_is_set(environment, site_url):
    env = clean_environment(DJANGO_SETTINGS_MODULE="config.settings.dev", DJANGO_READ_DOT_ENV="0")
    for name in ("WEB_BIND", "WEB_PORT", "SITE_URL"):
        env.pop(name, None)

    out = run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.SITE_URL)",
        ],
        cwd=ROOT,
        env=env | environment,
    )

    assert out.strip().splitlines()[-1] == site_url


def test_dotenv_fills_in_what_the_environment_does_not_set(project):
    (project / ".env").write_text("WEB_PORT=8010\nFLOWER_PORT=5600\n")
    show = [
        sys.executable,
        "-c",
        "import os; print(os.environ.get('WEB_PORT'), os.environ.get('FLOWER_PORT'))",
    ]
    wrapper = [sys.executable, "scripts/dotenv.py"]
    env = clean_environment()
    for name in ("WEB_PORT", "FLOWER_PORT"):
        env.pop(name, None)

    assert run(wrapper + show, cwd=project, env=env).split() == ["8010", "5600"]
    assert run(wrapper + show, cwd=project, env=env | {"WEB_PORT": "8020"}).split() == ["8020", "5600"]
    ignored = env | {"WEB_PORT": "8020", "DJANGO_READ_DOT_ENV": "0"}
    assert run(wrapper + show, cwd=project, env=ignored).split() == ["8020", "None"]


def test_make_run_prints_the_urls_of_the_port_in_dotenv_and_gives_honcho_no_dotenv(project):
    (project / ".env").write_text("WEB_PORT=8010\nFLOWER_PORT=5600\nFLOWER_BASIC_AUTH=admin:letmein\n")
    env = clean_environment(DJANGO_SETTINGS_MODULE="config.settings.dev")
    for name in ("WEB_PORT", "FLOWER_PORT", "FLOWER_BASIC_AUTH", "SITE_URL", "DATABASE_URL"):
        env.pop(name, None)

    banner = run(
        [sys.executable, "scripts/dotenv.py", sys.executable, "manage.py", "show_config", "--urls"],
        cwd=project,
        env=env,
    )
    planned = run(["make", "-n", f"VENV={ROOT / '.venv'}", "run", "smoke"], cwd=project, env=env)

    assert "API docs: http://127.0.0.1:8010/api/docs/" in banner
    assert "Flower:   http://127.0.0.1:5600/   (FLOWER_BASIC_AUTH: admin:letmein)" in banner
    assert "database: SQLite" in banner and "broker:   kombu filesystem transport" in banner
    commands = [line for line in planned.splitlines() if "manage.py" in line or "honcho" in line]
    assert commands and all("scripts/dotenv.py" in line for line in commands), planned
    assert any("honcho start --env /dev/null" in line for line in commands), planned


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["dotenv", "environment"])
def test_make_smoke_uses_the_services_of_make_run_and_says_which(project, celery_worker, where):
    """`make run` against real services (here: this test's database, broker and worker), then
    `make smoke` in another shell, with the service variables in .env or in its environment."""
    services = {"DATABASE_URL": database_url(), "CELERY_BROKER_URL": app.conf.broker_url}
    env = clean_environment(SMOKE_TIMEOUT="20")
    if where == "dotenv":
        (project / ".env").write_text("".join(f"{name}={value}\n" for name, value in services.items()))
    else:
        env |= services

    out = run(["make", "-s", f"VENV={ROOT / '.venv'}", "smoke"], cwd=project, env=env, timeout=60)

    db = connection.settings_dict
    assert f"database: postgresql {db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}" in out
    assert "broker:   amqp://" in out and app.conf.broker_url.rsplit("@", 1)[1] in out
    assert "round trip ok" in out


@pytest.mark.django_db
def test_smoke_without_a_worker_names_its_broker_and_database_and_the_cause(celery_app_without_worker):
    with pytest.raises(CommandError) as failed:
        call_command("celery_roundtrip", "--timeout", "0.3")

    message = str(failed.value)
    assert f"broker {app.conf.broker_url.split('@')[0].rsplit(':', 1)[0]}:**@" in message
    assert f"/{connection.settings_dict['NAME']}" in message
    assert "put them in .env" in message
