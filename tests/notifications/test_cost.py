"""What one message costs: the queries of one order.paid on its way to one e-mail, counted
statement by statement so that a round trip per message cannot creep back; one SMTP
connection for many messages; staff's rules and templates read once every few seconds."""

import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import events
from notifications import cache, delivery, services
from notifications.channels import email as email_channel
from notifications.models import MessageTemplate, Notification, Rule
from orders.services import order_event_data
from tests.factories import UserFactory
from tests.notifications.smtp import SmtpServer
from tests.notifications.test_delivery import last_event
from tests.notifications.test_templates import make_order

pytestmark = pytest.mark.django_db
Status = Notification.Status

# One order.paid -> one e-mail. The subscriber: the order with its payment and customer (and
# the customer's preferences), its lines, the message written. Before this was counted: 7 (the
# rule's row, the customer again, the staff template's row, the row read back after insert).
ON_EVENT_QUERIES = 3
# The sender: reserve (one UPDATE ... RETURNING); record: the conditional UPDATE and the
# notification.sent outbox row, in a transaction (here a savepoint and its release: the test's
# transaction is open). Before: 9 (a SELECT ... FOR UPDATE in each of two transactions).
DELIVER_QUERIES = 5


@pytest.fixture
def customer():
    return UserFactory(email="ada@example.com", phone="+79161234567", preferred_language="en")


def rule_channels(*channels: str) -> None:
    rule = Rule.objects.get(key="order.paid")
    rule.channels = list(channels)
    rule.save()


def paid_order(customer) -> events.Event:
    """order.paid of a new order of two lines, as orders publishes it."""
    order = make_order(customer)
    with transaction.atomic():
        events.publish("order.paid", order_event_data(order))
    return last_event("order.paid")


def counted(function, *args) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        result = function(*args)
    return result, [query["sql"] for query in queries.captured_queries]


def test_one_paid_order_to_one_email_costs_a_few_queries(smtp_server, customer):
    rule_channels("email")
    services.notifications_for_event(paid_order(customer))  # the rules and templates read once

    ids, on_event = counted(services.notifications_for_event, paid_order(customer))
    assert len(on_event) <= ON_EVENT_QUERIES, "\n".join(on_event)
    assert len(ids) == 1

    outcome, deliver = counted(delivery.deliver, ids[0])
    assert outcome == "sent"
    assert len(deliver) <= DELIVER_QUERIES, "\n".join(deliver)
    message = Notification.objects.get(pk=ids[0])
    assert (message.status, message.attempts, message.lease_until) == (Status.SENT, 1, None)
    assert len(smtp_server.to("ada@example.com")) == 1


def test_the_messages_of_one_event_are_written_by_one_insert(settings, customer):
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    rule_channels("email", "sms", "inapp")
    services.notifications_for_event(paid_order(customer))

    event = paid_order(customer)
    ids, queries = counted(services.notifications_for_event, event)

    assert len(ids) == 3
    inserts = [sql for sql in queries if sql.startswith('INSERT INTO "notifications_notification"')]
    assert len(inserts) == 1
    # ... and the in-app message, settled as it is written, has its notification.sent.
    assert len(queries) <= ON_EVENT_QUERIES + 1, "\n".join(queries)
    written = {n.channel: n for n in Notification.objects.filter(event_id=event.id)}
    assert (written["inapp"].status, written["inapp"].attempts) == (Status.DELIVERED, 1)
    assert written["email"].status == written["sms"].status == Status.QUEUED


def test_emails_share_one_connection_until_an_error_a_limit_or_the_server_closes_it(
    settings, customer, monkeypatch
):
    rule_channels("email")
    with SmtpServer(idle_timeout=1) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 2
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False

        def send() -> str:
            return delivery.deliver(services.notifications_for_event(paid_order(customer))[0])

        try:
            assert [send(), send(), send()] == ["sent"] * 3
            assert len(set(server.peers)) == 1  # three messages, one connection

            server.refuse_next("451 4.3.0 try later")
            assert send() == "retry"  # an error closes the connection...
            assert send() == "sent"
            assert len(set(server.peers)) == 2  # ...and the next message opens another

            time.sleep(1.5)  # the server drops the idle connection
            assert send() == "sent"  # sent on a new one at once, not retried later
            assert len(set(server.peers)) == 3

            monkeypatch.setattr(email_channel, "REUSE_MAX_MESSAGES", 2)
            assert [send(), send(), send()] == ["sent"] * 3
            assert len(set(server.peers)) == 4  # the 2nd message on a connection closes it
        finally:
            email_channel.close_connection()
    assert len(server.messages) == 8  # all but the refused one, each once
    assert len({m["Message-ID"] for m in server.messages}) == 8


def test_an_idle_connection_is_not_reused_and_one_of_another_server_neither(
    settings, smtp_server, customer, monkeypatch
):
    rule_channels("email")

    def send() -> str:
        return delivery.deliver(services.notifications_for_event(paid_order(customer))[0])

    monkeypatch.setattr(email_channel, "REUSE_IDLE_SECONDS", 0.2)
    assert send() == "sent"
    time.sleep(0.3)
    assert send() == "sent"
    assert len(set(smtp_server.peers)) == 2

    with SmtpServer() as other:
        settings.EMAIL_PORT = other.port
        assert send() == "sent"
        email_channel.close_connection()
    assert len(other.messages) == 1 and len(smtp_server.messages) == 2


def test_rules_and_templates_are_kept_a_few_seconds_and_a_save_applies_at_once(customer, monkeypatch):
    rule = Rule.objects.get(key="order.paid")
    rule.channels = ["inapp"]
    rule.save()
    assert _subject(customer).startswith("Order ")

    # A change that sends no signal applies when the snapshot is CACHE_SECONDS old...
    Rule.objects.filter(key="order.paid").update(enabled=False)
    assert _subject(customer).startswith("Order ")
    with monkeypatch.context() as aged:
        aged.setattr(cache, "CACHE_SECONDS", 0)
        assert _subject(customer) is None

    # ...one saved (as the admin saves) applies in this process at once.
    rule.enabled = True
    rule.save()
    assert _subject(customer).startswith("Order ")
    source = "{% block subject %}Paid {{ number }}{% endblock %}{% block inapp %}Thanks{% endblock %}"
    template = MessageTemplate.objects.create(name="order_paid", language="en", source=source)
    assert _subject(customer).startswith("Paid ")
    template.delete()
    assert _subject(customer).startswith("Order ")


def _subject(customer) -> str | None:
    """The subject of the in-app message of a new paid order (None: no message)."""
    ids = services.notifications_for_event(paid_order(customer))
    return Notification.objects.get(pk=ids[0]).subject if ids else None
