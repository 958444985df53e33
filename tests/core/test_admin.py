"""The backbone's admin pages and the shared admin base (core.admin): buttons drawn and pressed
only with their permission, a service's refusal shown as a message, a confirmation page that
shows on GET and acts on POST; system rows without a Save button; beat's schedule editable."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.models import User
from core import events
from core.admin import money_display
from core.models import DeadLetter, Heartbeat, OutboxEvent, ProcessedEvent
from tests.conftest import wait_for
from tests.factories import StaffFactory, SuperuserFactory
from tests.testapp.models import Effect

# These tests publish made-up event data: what they test is not an app's contract.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("any_event_data")]
LETTERS = "/admin/core/deadletter/"


def staff_with(*codenames: str) -> User:
    staff = StaffFactory()
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="core", codename__in=codenames)
    )
    return User.objects.get(pk=staff.pk)  # permissions are cached per instance


def letter_for(envelope: dict, subscriber: str = "tests.order_paid_audit") -> DeadLetter:
    now = timezone.now()
    return DeadLetter.objects.create(
        event_id=envelope["id"],
        event_type=envelope["type"],
        subscriber=subscriber,
        envelope=envelope,
        error="TransientError: boom",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
    )


@pytest.fixture
def letter():
    with transaction.atomic():
        event = events.publish("order.paid", {"order_id": "A-77"})
    return letter_for(OutboxEvent.objects.get(pk=event.pk).envelope)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_money_is_shown_with_its_currencys_digits():
    assert money_display(1250, "NGN") == "1,250.00 NGN"
    assert money_display(37, "JPY") == "37 JPY"
    assert money_display(1.5, "KWD") == "1.500 KWD"
    assert money_display(None, "USD") == "-"


# --- the buttons' permission, drawn and pressed ----------------------------------------------


def test_without_the_replay_permission_no_button_is_drawn_and_a_press_is_forbidden(client, letter):
    client.force_login(staff_with("view_deadletter"))

    page = client.get(f"{LETTERS}{letter.pk}/change/")

    assert page.status_code == 200
    assert "actions/replay_letter/" not in page.content.decode()
    assert "actions/dismiss_letter/" not in page.content.decode()
    assert client.post(f"{LETTERS}{letter.pk}/actions/replay_letter/").status_code == 403
    assert client.get(f"{LETTERS}{letter.pk}/actions/dismiss_letter/").status_code == 403
    assert client.post(f"{LETTERS}{letter.pk}/actions/dismiss_letter/", {"note": "x"}).status_code == 403
    letter.refresh_from_db()
    assert letter.replayed_at is None and letter.resolved_at is None


def test_with_it_the_buttons_are_drawn_on_a_read_only_page(client, letter):
    client.force_login(staff_with("view_deadletter", "replay_deadletter"))

    page = client.get(f"{LETTERS}{letter.pk}/change/").content.decode()

    assert f'<form method="post" action="{LETTERS}{letter.pk}/actions/replay_letter/">' in page
    assert ">Replay</button>" in page
    assert f'href="{LETTERS}{letter.pk}/actions/dismiss_letter/"' in page and "Dismiss…" in page
    assert 'name="_save"' not in page


def test_a_resolved_letter_has_no_buttons(client, letter):
    DeadLetter.objects.filter(pk=letter.pk).update(resolved_at=timezone.now())
    client.force_login(staff_with("view_deadletter", "replay_deadletter"))

    page = client.get(f"{LETTERS}{letter.pk}/change/").content.decode()

    assert "replay_letter" not in page and "dismiss_letter" not in page


# --- replay: the service's refusal as a message; its success through the worker ---------------


def test_a_replay_the_service_refuses_is_shown_and_changes_nothing(client, letter):
    DeadLetter.objects.filter(pk=letter.pk).update(subscriber="tests.gone")
    client.force_login(staff_with("view_deadletter", "replay_deadletter"))

    assert client.get(f"{LETTERS}{letter.pk}/actions/replay_letter/").status_code == 405  # POST only
    response = client.post(f"{LETTERS}{letter.pk}/actions/replay_letter/", follow=True)

    assert response.redirect_chain[-1][0] == f"{LETTERS}{letter.pk}/change/"
    assert messages_of(response) == ["no subscriber named tests.gone is registered any more"]
    letter.refresh_from_db()
    assert letter.replayed_at is None and letter.resolved_at is None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_replay_button_resolves_the_letter_through_the_worker(celery_worker, client):
    with transaction.atomic():
        event = events.publish("order.paid", {"order_id": "A-78"})
    wait_for(lambda: Effect.objects.filter(event_id=event.event_id).count() == 2, what="the first delivery")
    # As if order_paid_audit had failed for good: its effect and marker never committed.
    Effect.objects.filter(event_id=event.event_id, subscriber="order_paid_audit").delete()
    ProcessedEvent.objects.filter(event_id=event.event_id, subscriber="tests.order_paid_audit").delete()
    letter = letter_for(OutboxEvent.objects.get(pk=event.pk).envelope)
    client.force_login(staff_with("view_deadletter", "replay_deadletter"))

    response = client.post(f"{LETTERS}{letter.pk}/actions/replay_letter/", follow=True)

    assert messages_of(response) == [
        "Sent to tests.order_paid_audit again; this letter resolves when it succeeds."
    ]
    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=False).exists(),
        what="the replay to resolve the dead letter",
    )
    assert Effect.objects.filter(event_id=event.event_id, subscriber="order_paid_audit").count() == 1


# --- dismiss: a confirmation page on GET, the service on POST ---------------------------------


def test_dismiss_asks_first_then_resolves_without_a_replay(client, letter):
    staff = staff_with("view_deadletter", "replay_deadletter")
    client.force_login(staff)
    url = f"{LETTERS}{letter.pk}/actions/dismiss_letter/"

    confirm = client.get(url)

    text = confirm.content.decode()
    assert confirm.status_code == 200
    assert "tests.order_paid_audit will never handle order.paid" in text
    assert 'name="note"' in text and 'value="Yes, dismiss it"' in text
    assert f'href="{LETTERS}{letter.pk}/change/"' in text  # No, take me back
    assert DeadLetter.objects.get(pk=letter.pk).resolved_at is None

    no_note = client.post(url, {"note": ""})
    assert no_note.status_code == 200 and "This field is required." in no_note.content.decode()
    assert DeadLetter.objects.get(pk=letter.pk).resolved_at is None

    done = client.post(url, {"note": "the order was refunded by hand"}, follow=True)

    assert messages_of(done) == ["Dismissed: resolved without a replay."]
    letter.refresh_from_db()
    assert letter.resolved_at is not None and letter.replayed_at is None
    entry = LogEntry.objects.get(object_id=str(letter.pk))
    assert (entry.user_id, entry.change_message) == (
        staff.pk,
        "Dismissed without a replay: the order was refunded by hand",
    )

    again = client.post(url, {"note": "twice"}, follow=True)
    assert messages_of(again)[0].startswith(f"Dead letter #{letter.pk} was resolved at ")


# --- the list, and pages of system rows --------------------------------------------------------


def test_the_list_keeps_its_bulk_replay_and_filters_unresolved(client, letter):
    resolved = letter_for({**letter.envelope, "id": str(uuid.uuid4())}, subscriber="tests.other")
    DeadLetter.objects.filter(pk=resolved.pk).update(resolved_at=timezone.now())
    client.force_login(staff_with("view_deadletter", "replay_deadletter"))

    page = client.get(f"{LETTERS}?resolved_at__isempty=1").content.decode()

    assert 'value="replay"' in page
    assert f"{LETTERS}{letter.pk}/change/" in page
    assert f"{LETTERS}{resolved.pk}/change/" not in page


def test_system_rows_are_shown_without_a_save_button(client, letter):
    Heartbeat.objects.create(name="beat", last_seen=timezone.now() - timedelta(seconds=42), count=3)
    ProcessedEvent.objects.create(event_id=uuid.uuid4(), subscriber="tests.order_effect")
    client.force_login(SuperuserFactory())

    pages = [
        f"/admin/core/heartbeat/{Heartbeat.objects.get().pk}/change/",
        f"/admin/core/outboxevent/{OutboxEvent.objects.get().pk}/change/",
        f"/admin/core/processedevent/{ProcessedEvent.objects.get().pk}/change/",
        f"{LETTERS}{letter.pk}/change/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert 'name="_save"' not in response.content.decode(), url
    heartbeats = client.get("/admin/core/heartbeat/").content.decode()
    assert 42 <= int(re.search(r"(\d+) s ago", heartbeats).group(1)) < 120


def test_periodic_tasks_are_listed_and_editable(client):
    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="heartbeat", task="core.heartbeat", interval=every)
    client.force_login(SuperuserFactory())

    assert "heartbeat" in client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert (
        'name="_save"'
        in client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/").content.decode()
    )


@pytest.mark.parametrize(
    "changelist",
    [
        "/admin/payments/payment/",
        "/admin/payments/flaggedpayment/",
        "/admin/payments/refund/",
        "/admin/orders/order/",
        "/admin/bookings/booking/",
        "/admin/subscriptions/invoice/",
    ],
)
def test_a_list_is_exported_only_by_staff_who_may_see_it(client, changelist):
    client.force_login(StaffFactory())  # staff, but no permission on the model
    assert client.get(changelist + "export/").status_code == 403
    assert client.post(changelist + "export/", {"format": "0"}).status_code == 403

    client.force_login(SuperuserFactory())
    assert client.get(changelist + "export/").status_code == 200


def test_a_page_button_posted_to_the_list_address_is_a_404_not_a_crash(client):
    client.force_login(SuperuserFactory())
    assert client.post("/admin/core/deadletter/actions/replay_letter/").status_code == 404
    assert client.post("/admin/payments/payment/actions/reverify/").status_code == 404
