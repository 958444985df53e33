"""End to end with real workers: an order, a booking and a toybox each end in the right
messages, in the right language, on a real SMTP server and Twilio's fake; the same
booking.confirmed delivered three times with the worker SIGKILLed mid-send is one e-mail
and one SMS."""

from datetime import timedelta

import pytest
from django.test import override_settings

from bookings.models import Booking
from core.events.registry import SUBSCRIBERS
from core.models import OutboxEvent, ProcessedEvent
from notifications import delivery
from notifications.models import Notification
from orders.models import Order
from tests.bookings.conftest import local
from tests.conftest import wait_for
from tests.factories import ResourceFactory, UserFactory
from tests.notifications.fakes.twilio import FakeTwilio
from tests.notifications.test_delivery import confirmed_booking
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, order_of
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory, born_months_ago
from tests.subscriptions.helpers import batch, subscribe

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
Status = Notification.Status


@pytest.fixture
def site(live_server):
    with override_settings(SITE_URL=live_server.url):
        yield live_server


@pytest.fixture
def twilio(settings):
    with FakeTwilio() as fake:
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = fake.account_sid, fake.auth_token
        settings.TWILIO_FROM_NUMBER, settings.TWILIO_API_URL = fake.from_number, fake.base_url
        settings.NOTIFICATIONS_QUIET_HOURS = ""
        yield fake


def sent(user, channel: str) -> list[Notification]:
    return list(
        Notification.objects.filter(user=user, channel=channel, status__in=[Status.SENT, Status.DELIVERED])
    )


def test_a_paid_order_is_told_in_russian_by_email_sms_and_in_the_inbox(
    site, celery_worker, client, smtp_server, twilio
):
    customer = UserFactory(email="olga@example.com", phone="+79161112233", preferred_language="ru")
    variant = VariantFactory(price="1250.00", stock_on_hand=5)
    api = client_for(customer)
    order = order_of(checkout(api, (variant.pk, 2)))
    client.post(order.payment.checkout_url.removeprefix(site.url), {"action": "pay"})

    wait_for(lambda: len(smtp_server.to("olga@example.com")) == 1, timeout=60, what="the receipt e-mail")
    wait_for(lambda: sent(customer, "sms"), timeout=30, what="the SMS")
    assert Order.objects.get(pk=order.pk).status == "paid"
    [mail] = smtp_server.to("olga@example.com")
    assert order.number in mail["Subject"] and mail["Content-Language"] == "ru"
    text = mail.get_body(("plain",)).get_content()
    assert order.number in text and "2 500,00" in text.replace("\xa0", " ").replace("\u202f", " ")
    assert any("\u0400" <= ch <= "\u04ff" for ch in text)  # Russian
    [sms] = twilio.messages
    assert sms["to"] == "+79161112233" and order.number in sms["body"]
    inbox = api.get("/api/notifications", {"channel": "inapp"}).json()["results"]
    assert [(m["rule"], m["read"]) for m in inbox] == [("order.paid", False)]


def test_a_confirmed_booking_is_told_with_its_local_time_and_a_delivery_receipt(
    site, celery_worker, client, smtp_server, twilio
):
    customer = UserFactory(email="max@example.com", phone="+4915112345678", preferred_language="en")
    hall = ResourceFactory(name="Blue Hall")
    start = local(5, 14)  # 14:00 in Berlin, the hall's timezone
    created = client_for(customer).post(
        "/api/bookings",
        {"hall_id": hall.pk, "start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()},
        format="json",
        HTTP_IDEMPOTENCY_KEY="notify-1",
    )
    assert created.status_code == 201, created.json()
    client.post(created.json()["payment"]["checkout_url"].removeprefix(site.url), {"action": "pay"})

    wait_for(lambda: smtp_server.to("max@example.com"), timeout=60, what="the confirmation e-mail")
    sms = wait_for(lambda: sent(customer, "sms"), timeout=30, what="the SMS")[0]
    [mail] = smtp_server.to("max@example.com")
    text = mail.get_body(("plain",)).get_content()
    assert "Blue Hall" in text and "14:00" in text and mail["Content-Language"] == "en"
    assert "14:00" in twilio.messages[0]["body"]

    # Twilio's signed status callback reaches the live site: the SMS is delivered.
    assert twilio.status_callback(twilio.messages[0], "delivered").status_code == 204
    sms.refresh_from_db()
    assert sms.status == Status.DELIVERED and sms.provider_id == twilio.messages[0]["sid"]
    assert Booking.objects.get(public_id=created.json()["id"]).status == "confirmed"


def test_a_toybox_is_told_to_the_parent_with_the_childs_toys(site, celery_worker, client, smtp_server):
    parent = UserFactory(email="parent@example.com", preferred_language="en")
    mia = ChildFactory(customer=parent, name="Mia", birth_date=born_months_ago(30), interests=["music"])
    ToyFactory(sku="DRUM", age_min_months=18, age_max_months=48, tags=["music"])
    ToyFactory(sku="BLOCKS", age_min_months=18, age_max_months=48)
    api = client_for(parent)
    subscription = subscribe(api, mia, PlanFactory(toys_per_box=2)).json()["id"]
    page = batch(api, subscription).json()["checkout_url"].removeprefix(site.url)
    client.post(page, {"action": "pay"})

    wait_for(
        lambda: Notification.objects.filter(
            rule="toybox.created", channel="email", status=Status.SENT
        ).exists(),
        timeout=90,
        what="the toybox e-mail",
    )
    box_mail = next(m for m in smtp_server.to("parent@example.com") if "Mia" in m["Subject"])
    text = box_mail.get_body(("plain",)).get_content()
    toys = Notification.objects.get(rule="toybox.created", channel="email").body
    assert "Mia" in text and toys.strip() == text.replace("\r\n", "\n").strip()


def test_the_same_confirmation_three_times_and_a_sigkill_mid_send_is_one_email_and_one_sms(
    worker_processes, smtp_server, twilio, settings
):
    customer = UserFactory(email="ivan@example.com", phone="+79160000001", preferred_language="ru")
    env = {
        "TEST_EMAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "TEST_EMAIL_TIMEOUT": "20",
        "TEST_TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TEST_TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TEST_TWILIO_FROM_NUMBER": twilio.from_number,
        "TEST_TWILIO_API_URL": twilio.base_url,
        "TEST_NOTIFICATIONS_LEASE_SECONDS": "3",
        "TEST_NOTIFICATIONS_QUIET_HOURS": "",
    }
    settings.NOTIFICATIONS_LEASE_SECONDS = 3
    smtp_server.hold()  # the e-mail's conversation stops before the message is accepted
    sms_answer = twilio.hold_after_next_create()  # Twilio makes the SMS; its answer never arrives
    confirmed_booking(customer)  # booking.confirmed in the outbox
    queues = "events,notifications"

    first = worker_processes(queues, concurrency=2, env=env)
    assert smtp_server.holding.wait(60), "the e-mail was not being sent"
    wait_for(lambda: twilio.messages, timeout=30, what="Twilio to have made the SMS")
    wait_for(
        lambda: Notification.objects.filter(status=Status.SENDING).count() == 2,
        what="both sends to be under way",
    )
    # Two more deliveries of the very same event (same id) while the sends hang...
    envelope = OutboxEvent.objects.get(type="booking.confirmed").envelope
    subscriber = SUBSCRIBERS["notifications.on_event"]
    for _ in range(2):
        subscriber.task.apply_async(args=[envelope], queue=subscriber.queue)
    first.kill()  # ...and SIGKILL mid-send
    smtp_server.release()
    sms_answer.set()

    worker_processes(queues, concurrency=2, env=env)  # RabbitMQ hands the unacknowledged tasks over
    wait_for(
        lambda: ProcessedEvent.objects.filter(subscriber="notifications.on_event").count() == 1,
        what="the event to be handled",
    )

    def settled() -> bool:
        delivery.sweep()  # what beat does every minute: takes over sends whose lease ran out
        return not Notification.objects.filter(status__in=[Status.QUEUED, Status.SENDING]).exists()

    wait_for(settled, timeout=60, interval=1, what="the e-mail and the SMS to be recorded")
    messages = {n.channel: n for n in Notification.objects.filter(user=customer)}
    assert set(messages) == {"email", "sms", "inapp"}
    assert len(smtp_server.to("ivan@example.com")) == 1
    assert len(twilio.messages) == 1
    assert messages["sms"].status == Status.SENT and messages["sms"].provider_id == twilio.messages[0]["sid"]
    assert messages["email"].status == Status.SENT and messages["email"].attempts == 2
    assert OutboxEvent.objects.filter(type="notification.sent").count() == 3


def test_an_smtp_server_that_is_down_never_holds_up_the_order(site, celery_worker, client, settings):
    from tests.notifications.smtp import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 1
    customer = UserFactory(email="nobody-home@example.com")
    order = order_of(checkout(client_for(customer), (VariantFactory().pk, 1)))
    client.post(order.payment.checkout_url.removeprefix(site.url), {"action": "pay"})

    wait_for(lambda: Order.objects.get(pk=order.pk).status == "paid", timeout=60, what="the order to be paid")
    email = wait_for(
        lambda: Notification.objects.filter(
            user=customer, channel="email", attempts__gte=1, status=Status.QUEUED
        ).first(),
        timeout=30,
        what="the e-mail's first attempt",
    )
    assert "smtp unreachable" in email.last_error and email.not_before is not None  # retried later
    assert Notification.objects.get(user=customer, channel="inapp").status == Status.DELIVERED
