"""The staff console in a real browser: Debian's Chromium driven by Playwright (.ci/run
installs `chromium` from the system's packages; no browser is ever downloaded).

Staff log into the admin, read the dashboard, refund part of a payment through its button,
replay a dead letter, export payments to CSV, open the bookings calendar; an operator opens
Flower's task list with its basic auth. Each step leaves a screenshot in the artefacts
folder (TEST_ARTIFACTS_DIR, by default var/test-artifacts; .ci/run prints where).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from celery import current_app
from django.db import connection

from tests.conftest import wait_for
from tests.notifications.smtp import free_port

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM} (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def shots() -> Path:
    """Where this module's screenshots go (kept after the run: CI prints the folder)."""
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / "var" / "test-artifacts") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process that must use this test's database (and TEST_* services)."""
    db = connection.settings_dict
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_READ_DOT_ENV": "0",
        **extra,
    }


@pytest.mark.worker
def test_flower_lists_the_tasks_behind_its_basic_auth(browser, worker_processes, shots, tmp_path):
    worker_processes("events")
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "flower", "--loglevel=WARNING"],
        cwd=ROOT,
        env=child_env(
            FLOWER_BASIC_AUTH="ops:flower-secret",
            FLOWER_PORT=str(port),
            FLOWER_ADDRESS="127.0.0.1",
            FLOWER_DB=str(tmp_path / "flower.db"),
        ),
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert flower.poll() is None, "flower exited at start"
            try:
                return requests.get(base + "/", timeout=1).status_code == 401
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=30, what="Flower to answer")
        assert requests.get(base + "/tasks", auth=("ops", "wrong"), timeout=5).status_code == 401

        # Flower turns task events on in the workers it sees; a task run after that is listed
        # (the hourly prune: a task Flower shows, unlike the frequent sweeps kept out of it).
        def listed() -> bool:
            current_app.send_task("core.events.prune")
            tasks = requests.get(base + "/api/tasks", auth=("ops", "flower-secret"), timeout=5)
            return tasks.ok and any(t.get("name") == "core.events.prune" for t in tasks.json().values())

        wait_for(listed, timeout=60, interval=2, what="Flower to see a task")

        context = browser.new_context(http_credentials={"username": "ops", "password": "flower-secret"})
        page = context.new_page()
        page.goto(base + "/tasks")
        page.get_by_text("core.events.prune").first.wait_for(timeout=20_000)
        page.screenshot(path=str(shots / "flower-tasks.png"))
        context.close()
    finally:
        flower.terminate()
        flower.wait(timeout=20)
