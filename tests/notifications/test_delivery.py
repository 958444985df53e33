"""From an event to messages, and sending one: rules, preferences, quiet hours, addresses,
the delivery log's unique key, reserve-send-record with retries, and what a crash leaves."""

import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from bookings import services as bookings
from core.events import Event
from core.events.registry import SUBSCRIBERS
from core.models import OutboxEvent
from notifications import delivery, services
from notifications.channels import CHANNELS
from notifications.models import MessageTemplate, Notification, Preference, Rule
from payments.models import Payment
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, StaffFactory, UserFactory
from tests.notifications.smtp import free_port

pytestmark = pytest.mark.django_db
Status = Notification.Status
MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.fixture
def channels(settings, smtp_server):
    """E-mail to the local SMTP server; SMS and Telegram configured (no provider is called here)."""
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TELEGRAM_BOT_TOKEN = "123:abc"
    settings.NOTIFICATIONS_QUIET_HOURS = ""
    return smtp_server


@pytest.fixture
def customer():
    return UserFactory(email="anna@example.com", phone="+79161234567", preferred_language="ru")


def confirmed_booking(customer, days: int = 3):
    booking = bookings.booking_hold(
        customer_id=customer.pk,
        resource_id=ResourceFactory().pk,
        starts_at=local(days, 10),
        ends_at=local(days, 12),
    )
    Payment.objects.filter(pk=booking.payment_id).update(status="succeeded")
    bookings.booking_apply_payment_completed(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id
    )
    return booking


def last_event(event_type: str) -> Event:
    return Event.from_envelope(OutboxEvent.objects.filter(type=event_type).latest("seq").envelope)


def handle(event: Event, *, now: datetime | None = None) -> dict[str, Notification]:
    services.notifications_for_event(event, now=now)
    return {n.channel: n for n in Notification.objects.filter(event_id=event.id)}


def test_a_confirmed_booking_becomes_one_message_per_channel_in_the_customers_language(channels, customer):
    confirmed_booking(customer)
    messages = handle(last_event("booking.confirmed"))

    assert set(messages) == {"email", "sms", "inapp"}  # Telegram is not linked: skipped, not failed
    assert (messages["email"].address, messages["sms"].address) == ("anna@example.com", "+79161234567")
    assert {m.language for m in messages.values()} == {"ru"}
    assert messages["email"].status == messages["sms"].status == Status.QUEUED
    assert messages["email"].subject and messages["email"].html and messages["sms"].body
    assert messages["inapp"].status == Status.DELIVERED  # the inbox is the log itself
    assert OutboxEvent.objects.filter(type="notification.sent", data__channel="inapp").count() == 1


def test_a_redelivered_event_writes_nothing_twice(channels, customer):
    confirmed_booking(customer)
    event = last_event("booking.confirmed")
    task = SUBSCRIBERS["notifications.on_event"].task
    task.run(OutboxEvent.objects.get(event_id=event.id).envelope)
    task.run(OutboxEvent.objects.get(event_id=event.id).envelope)
    services.notifications_for_event(event)  # past the processed-event marker: the unique key holds

    assert Notification.objects.filter(event_id=event.id).count() == 3
    assert OutboxEvent.objects.filter(type="notification.sent").count() == 1


def test_the_message_goes_to_the_address_recorded_at_queueing(channels, customer):
    confirmed_booking(customer)
    email = handle(last_event("booking.confirmed"))["email"]
    customer.email = "new-address@example.com"
    customer.save()

    assert delivery.deliver(email.pk) == "sent"
    [received] = channels.messages
    assert received["To"] == "anna@example.com"


def test_the_email_has_both_parts_the_subject_and_the_language(channels, customer):
    confirmed_booking(customer)
    email = handle(last_event("booking.confirmed"))["email"]
    delivery.deliver(email.pk)

    [received] = channels.messages
    assert received["Subject"].strip() == email.subject  # a folded, encoded header starts with a space
    assert received["Content-Language"] == "ru"
    assert received["Message-ID"] == f"<{email.public_id}@localhost>"
    plain, html = received.get_body(("plain",)), received.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n").strip() == email.body.strip()
    assert "<html" in html.get_content().lower()
    email.refresh_from_db()
    assert (email.status, email.attempts, email.provider_id) == (
        Status.SENT,
        1,
        f"{email.public_id}@localhost",
    )
    sent = OutboxEvent.objects.get(type="notification.sent", data__notification_id=email.public_id)
    assert sent.data["channel"] == "email" and sent.data["rule"] == "booking.confirmed"


def test_preferences_and_opt_outs_skip_channels_but_critical_messages_ignore_them(channels, customer):
    services.preference_update(customer, channels={"transactional": ["email", "inapp"]})
    booking = confirmed_booking(customer)
    assert set(handle(last_event("booking.confirmed"))) == {"email", "inapp"}

    customer.email_opt_out = True
    customer.save()
    bookings.booking_cancel(booking_id=booking.pk, actor_id=customer.pk, reason="studio closed")
    # booking.cancelled is critical: the opt-out and the preference do not hold it back.
    assert set(handle(last_event("booking.cancelled"))) == {"email", "sms", "inapp"}


def test_a_missing_phone_skips_sms(channels, customer):
    customer.phone = ""
    customer.save()
    confirmed_booking(customer)
    assert set(handle(last_event("booking.confirmed"))) == {"email", "inapp"}


def test_quiet_hours_hold_sms_until_morning_in_the_customers_timezone(channels, customer):
    services.preference_update(customer, quiet_hours_start=time(22), quiet_hours_end=time(8), timezone=MOSCOW)
    confirmed_booking(customer)
    late = datetime(2026, 12, 7, 23, 30, tzinfo=MOSCOW)
    messages = handle(last_event("booking.confirmed"), now=late)

    assert messages["sms"].not_before == datetime(2026, 12, 8, 8, 0, tzinfo=MOSCOW)
    assert messages["email"].not_before is None  # e-mail waits in an inbox anyway
    assert delivery.deliver(messages["sms"].pk, now=late) == "not due or not ours"
    Notification.objects.filter(pk=messages["sms"].pk).update(updated_at=late - timedelta(hours=1))
    # The sweep sends it once the morning has come, not before.
    assert messages["sms"].pk not in _swept(late)
    assert messages["sms"].pk in _swept(datetime(2026, 12, 8, 8, 1, tzinfo=MOSCOW))


def _swept(now: datetime) -> list[int]:
    from unittest import mock

    with mock.patch.object(delivery, "_send_task") as send:
        delivery.sweep(now=now)
    return [call.args[0] for call in send.call_args_list]


def test_quiet_hours_span_midnight_and_clear():
    preference = Preference(quiet_hours_start=time(22), quiet_hours_end=time(8), timezone=MOSCOW)
    assert services.quiet_until(preference, datetime(2026, 12, 7, 21, 59, tzinfo=MOSCOW)) is None
    assert services.quiet_until(preference, datetime(2026, 12, 8, 3, 0, tzinfo=MOSCOW)) == datetime(
        2026, 12, 8, 8, 0, tzinfo=MOSCOW
    )
    daytime = Preference(quiet_hours_start=time(13), quiet_hours_end=time(14), timezone=MOSCOW)
    assert services.quiet_until(daytime, datetime(2026, 12, 7, 13, 30, tzinfo=MOSCOW)) == datetime(
        2026, 12, 7, 14, 0, tzinfo=MOSCOW
    )
    assert services.quiet_until(Preference(timezone=MOSCOW), datetime(2026, 12, 7, 3, tzinfo=MOSCOW)) is None


def test_a_disabled_rule_or_a_channel_taken_off_it_sends_nothing_there(channels, customer):
    rule = Rule.objects.get(key="booking.confirmed")
    rule.channels = ["email"]
    rule.save()  # as the admin does: this process's rules are read again at once
    confirmed_booking(customer)
    assert set(handle(last_event("booking.confirmed"))) == {"email"}

    rule.enabled = False
    rule.save()
    confirmed_booking(customer, days=4)
    assert handle(last_event("booking.confirmed")) == {}


def test_a_refused_address_fails_at_once_and_a_busy_server_is_retried_then_failed(
    channels, customer, settings
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 2
    confirmed_booking(customer)
    email = handle(last_event("booking.confirmed"))["email"]

    channels.refuse_next("451 4.3.0 mailbox busy, try later")
    assert delivery.deliver(email.pk) == "retry"
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.QUEUED, 1)
    assert "451" in email.last_error and email.not_before > timezone.now()
    assert delivery.deliver(email.pk) == "not due or not ours"  # the backoff holds it

    channels.refuse_next("451 4.3.0 mailbox busy, try later")
    assert delivery.deliver(email.pk, now=email.not_before + timedelta(seconds=1)) == "failed"
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.FAILED, 2)
    assert "after 2 attempts" in email.last_error
    failed = OutboxEvent.objects.get(type="notification.failed")
    assert failed.data["notification_id"] == email.public_id and failed.data["audience"] == "customer"

    confirmed_booking(customer, days=4)
    refused = handle(last_event("booking.confirmed"))["email"]
    channels.refuse_next("550 5.1.1 no such user")
    assert delivery.deliver(refused.pk) == "failed"
    refused.refresh_from_db()
    assert (refused.status, refused.attempts) == (Status.FAILED, 1)
    assert "550" in refused.last_error


def test_an_smtp_server_that_does_not_answer_is_a_temporary_failure(channels, customer, settings):
    confirmed_booking(customer)
    email = handle(last_event("booking.confirmed"))["email"]
    settings.EMAIL_PORT = free_port()  # nothing listens there

    assert delivery.deliver(email.pk) == "retry"
    email.refresh_from_db()
    assert email.status == Status.QUEUED and "smtp unreachable" in email.last_error


def test_a_sender_that_died_after_sending_is_taken_over_after_its_lease(channels, customer, settings):
    """E-mail cannot be asked whether it went: it is sent again with the same Message-ID."""
    settings.NOTIFICATIONS_LEASE_SECONDS = 60
    confirmed_booking(customer)
    email = handle(last_event("booking.confirmed"))["email"]
    reserved, _ = delivery._reserve(email.pk, timezone.now())

    CHANNELS["email"].send(reserved)  # ...and the worker dies before recording it

    assert delivery.deliver(email.pk) == "not due or not ours"  # its lease still holds
    later = timezone.now() + timedelta(seconds=61)
    assert email.pk in _swept(later)
    assert delivery.deliver(email.pk, now=later) == "sent"
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.SENT, 2)
    assert [m["Message-ID"] for m in channels.messages] == [f"<{email.public_id}@localhost>"] * 2


def test_a_task_lost_before_it_ran_is_sent_by_the_sweep(channels, customer, settings):
    confirmed_booking(customer)
    email = handle(last_event("booking.confirmed"))["email"]
    assert email.pk not in _swept(timezone.now())  # its task is on its way
    Notification.objects.filter(pk=email.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.NOTIFICATIONS_SWEEP_GRACE_SECONDS + 1)
    )
    assert email.pk in _swept(timezone.now())


def test_a_broken_template_fails_its_messages_keeps_the_event_and_alerts_staff_once(
    channels, customer, settings
):
    StaffFactory(email="ops@example.com")
    MessageTemplate.objects.create(
        name="booking_confirmed",
        language="ru",
        source="{% block subject %}{{ oops|no_such_filter }}{% endblock %}",
    )
    confirmed_booking(customer)
    first = handle(last_event("booking.confirmed"))
    confirmed_booking(customer, days=4)
    second = handle(last_event("booking.confirmed"))

    for message in [*first.values(), *second.values()]:
        assert message.status == Status.FAILED
        assert message.last_error.startswith("template:") and "booking_confirmed" in message.last_error
    failures = OutboxEvent.objects.filter(type="notification.failed").order_by("seq")
    assert failures.count() == 6  # e-mail, SMS and in-app of each booking
    for failure in failures:
        handle(Event.from_envelope(failure.envelope))
    alerts = Notification.objects.filter(rule="staff.notification_failed")
    # One alert to staff's e-mail for six messages that could not be written.
    assert list(alerts.values_list("address", flat=True)) == ["ops@example.com"]
    assert "booking.confirmed" in alerts.get().body
    # A failed staff alert alerts nobody (no loop).
    Notification.objects.filter(rule="staff.notification_failed").update(status=Status.FAILED)
    alert = alerts.first()
    with_alert = Event(
        id=uuid.uuid4(),
        type="notification.failed",
        version=1,
        occurred_at=timezone.now(),
        source="notifications",
        data=delivery.event_data(alert, error="smtp down"),
    )
    assert handle(with_alert) == {}


def test_a_flagged_payment_and_a_new_dead_letter_alert_staff_once_each(channels, customer, settings):
    from core.events.runner import dead_letter_record
    from payments.services import payment_flag

    settings.TELEGRAM_STAFF_CHAT_ID = "-100200300"
    ops = StaffFactory(email="ops@example.com")
    Preference.objects.create(user=ops, telegram_chat_id="5550001")  # their own chat gets no alerts
    booking = confirmed_booking(customer)
    payment = Payment.objects.get(pk=booking.payment_id)
    payment_flag(payment, "gateway reports 10.00 EUR paid, payment is for 36.00 EUR")
    payment_flag(payment, "gateway reports 10.00 EUR paid, payment is for 36.00 EUR")  # the same reason

    [flagged] = OutboxEvent.objects.filter(type="payment.flagged")
    assert flagged.data["payment_id"] == payment.public_id and "10.00 EUR" in flagged.data["reason"]
    alerts = handle(Event.from_envelope(flagged.envelope))
    assert (alerts["email"].address, alerts["email"].rule) == ("ops@example.com", "staff.payment_flagged")
    assert alerts["telegram"].address == "-100200300" and payment.public_id in alerts["telegram"].body
    assert Notification.objects.filter(rule="staff.payment_flagged", channel="telegram").count() == 1

    envelope = OutboxEvent.objects.get(type="booking.confirmed").envelope
    for _ in range(2):  # a known dead letter failing again is not news
        dead_letter_record(
            subscriber="orders.on_payment_completed",
            envelope=envelope,
            exc=ValueError("boom"),
            attempts=4,
            trace="",
        )
    [letter] = OutboxEvent.objects.filter(type="dead_letter.recorded")
    assert (letter.data["subscriber"], letter.data["event_type"]) == (
        "orders.on_payment_completed",
        "booking.confirmed",
    )
    services.notifications_for_event(Event.from_envelope(letter.envelope))
    alert = Notification.objects.get(rule="staff.dead_letter", channel="email")  # grouped: an id of its own
    assert "boom" in alert.body and "orders.on_payment_completed" in alert.body


def test_a_message_about_an_object_that_is_gone_fails_with_the_reason(channels, customer):
    confirmed_booking(customer)
    event = last_event("booking.confirmed")
    gone = Event(**{**event.__dict__, "id": uuid.uuid4(), "data": {**event.data, "booking_id": "bkg_gone"}})
    messages = handle(gone)

    assert set(messages) == {"email", "sms", "inapp"}
    for message in messages.values():
        assert message.status == Status.FAILED and "bkg_gone" in message.last_error
        assert message.last_error.startswith("context:")
    assert OutboxEvent.objects.filter(type="notification.failed").count() == 3


def test_a_reminder_is_not_held_by_quiet_hours_past_the_start(channels, customer):
    services.preference_update(customer, quiet_hours_start=time(22), quiet_hours_end=time(8), timezone=MOSCOW)
    booking = confirmed_booking(customer)
    bookings.booking_send_reminders(now=booking.starts_at - timedelta(hours=1, minutes=30))
    event = last_event("booking.reminder")
    # Quiet until 08:00 Moscow; the booking starts before that: the reminder goes now.
    early = booking.starts_at.astimezone(MOSCOW).replace(hour=5, minute=0)
    Booking = type(booking)
    Booking.objects.filter(pk=booking.pk).update(
        starts_at=early + timedelta(hours=2), ends_at=early + timedelta(hours=3)
    )
    messages = handle(event, now=early)
    assert messages["sms"].not_before is None


def test_the_message_id_takes_the_senders_domain_whatever_its_form(settings):
    from notifications.channels.email import message_id
    from tests.notifications.factories import NotificationFactory

    settings.DEFAULT_FROM_EMAIL = "Toy Shop <shop@toys.example>"
    message = NotificationFactory.build(public_id="ntf_abc")
    assert message_id(message) == "<ntf_abc@toys.example>"
