"""The staff console in a real browser: Debian's Chromium driven by Playwright (.ci/run
installs `chromium` from the system's packages; no browser is ever downloaded).

Staff log into the admin, read the dashboard, refund part of a payment through its button,
replay a dead letter, export payments to CSV, open the bookings calendar; an operator opens
Flower's task list with its basic auth. Each step leaves a screenshot in the artefacts
folder (TEST_ARTIFACTS_DIR, by default var/test-artifacts; .ci/run prints where).
"""

import csv
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from celery import current_app
from django.db import transaction
from django.utils import timezone

from bookings import services as bookings_services
from core import events
from core.models import DeadLetter, OutboxEvent, ProcessedEvent
from payments import services
from payments.models import Payment, Refund
from tests.bookings.conftest import local
from tests.conftest import child_env, wait_for
from tests.factories import PASSWORD, ResourceFactory, SuperuserFactory, UserFactory
from tests.notifications.smtp import free_port
from tests.payments.test_reconciliation import paid_at_the_gateway_but_never_told
from tests.payments.test_sandbox_e2e import start_sandbox_payment
from tests.testapp.models import Effect

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_event_data"),  # made-up event data
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


@pytest.fixture
def staff_page(browser, live_server, monkeypatch):
    """A logged-in superuser's page; every request to another host is refused and recorded."""
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # synchronous all the same (Django would refuse them without this).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    own = urlsplit(live_server.url).netloc
    refused: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)

    def only_our_host(route):
        if urlsplit(route.request.url).netloc == own or route.request.url.startswith("data:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_our_host)
    page = context.new_page()
    staff = SuperuserFactory()
    page.goto(live_server.url + "/admin/login/?next=/admin/")
    page.fill("#id_username", staff.email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#console-dashboard")
    page.refused = refused
    yield page
    context.close()


def message(page) -> str:
    """The admin's messages after an action (success or refusal)."""
    return page.locator("ul.messagelist").inner_text(timeout=10_000)


def a_paid_payment() -> Payment:
    payment, _ = start_sandbox_payment()
    paid_at_the_gateway_but_never_told(payment)
    services.payment_verify(payment_id=payment.pk)
    return Payment.objects.get(pk=payment.pk)


def a_dead_letter() -> DeadLetter:
    """order.paid delivered to the test subscriber, then as if its last retry had failed."""
    with transaction.atomic():
        event = events.publish("order.paid", {"order_id": "A-12"})
    wait_for(lambda: Effect.objects.filter(event_id=event.event_id).count() == 2, what="the first delivery")
    Effect.objects.filter(event_id=event.event_id, subscriber="order_paid_audit").delete()
    ProcessedEvent.objects.filter(event_id=event.event_id, subscriber="tests.order_paid_audit").delete()
    now = timezone.now()
    return DeadLetter.objects.create(
        event_id=event.event_id,
        event_type="order.paid",
        subscriber="tests.order_paid_audit",
        envelope=OutboxEvent.objects.get(pk=event.pk).envelope,
        error="TransientError: boom",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
    )


@pytest.mark.worker
def test_staff_refund_replay_and_export_from_the_admin(staff_page, live_server, celery_worker, shots):
    page, base = staff_page, live_server.url
    payment = a_paid_payment()
    letter = a_dead_letter()

    # The dashboard: the dead letter and the payment are counted, each figure a link to its list.
    page.goto(base + "/admin/")
    dead = page.locator('[data-figure="ops.dead-letters"]')
    assert dead.inner_text().strip() == "1"
    assert dead.get_attribute("href").startswith("/admin/core/deadletter/")
    assert page.locator('[data-figure="payments.today.sandbox.succeeded"]').inner_text().startswith("1")
    page.screenshot(path=str(shots / "admin-dashboard.png"), full_page=True)

    # Part of the payment back through its button: a form, a confirmation, then the worker.
    page.goto(f"{base}/admin/payments/payment/{payment.pk}/change/")
    assert page.locator('input[name="_save"]').count() == 0  # a read-only page: no Save
    page.click('li[data-tool-name="refund"] a')
    page.fill('input[name="amount"]', "25.00")
    page.fill('input[name="reason"]', "one item came back")
    page.screenshot(path=str(shots / "admin-refund-confirm.png"), full_page=True)
    page.click('input[type=submit][value="Yes, refund"]')
    assert "25.00 USD" in message(page)
    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "partially_refunded", what="the refund")
    page.reload()
    assert "Partially refunded" in page.content() or "partially_refunded" in page.content()
    page.screenshot(path=str(shots / "admin-payment-refunded.png"), full_page=True)
    refund = Refund.objects.get(payment=payment)
    assert (refund.amount, refund.reason, refund.status) == (
        Decimal("25.00"),
        "one item came back",
        "succeeded",
    )

    # The dead letter goes back to its subscriber and resolves.
    page.goto(f"{base}/admin/core/deadletter/{letter.pk}/change/")
    page.click('li[data-tool-name="replay_letter"] button')
    assert "again" in message(page)
    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=False).exists(),
        what="the replay to resolve the dead letter",
    )
    page.screenshot(path=str(shots / "admin-dead-letter-replayed.png"), full_page=True)

    # The accountant's CSV: the paid payment with what was refunded.
    page.goto(base + "/admin/payments/payment/?status__exact=partially_refunded")
    page.click("a.export_link")
    page.screenshot(path=str(shots / "admin-export.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("button", name="Submit").click()
    rows = list(csv.DictReader(Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()))
    assert len(rows) == 1
    (row,) = rows
    assert payment.public_id in row.values()
    assert "75.00" in row.values() and "25.00" in row.values()

    assert page.refused == []  # nothing from another host: the console works offline


def test_staff_open_a_resources_day_on_the_bookings_calendar(staff_page, live_server, shots):
    page = staff_page
    hall, customer = ResourceFactory(name="Studio A"), UserFactory()
    start = local(3, 10)  # 10:00 in Berlin, three days ahead
    booking = bookings_services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=start, ends_at=start + timedelta(hours=2)
    )

    page.goto(live_server.url + "/admin/bookings/booking/")
    page.click("a.calendar-link")
    page.select_option("#calendar-resource", str(hall.pk))
    page.fill("#calendar-date", f"{start:%Y-%m-%d}")
    page.get_by_role("button", name="Show").click()

    block = page.locator(f'a.booking[data-booking="{booking.public_id}"]')
    assert "10:00-12:00" in block.inner_text()
    assert block.get_attribute("href") == f"/admin/bookings/booking/{booking.pk}/change/"
    page.screenshot(path=str(shots / "admin-bookings-calendar.png"), full_page=True)
    block.click()
    assert booking.public_id in page.title() or booking.public_id in page.content()
    assert page.refused == []


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
