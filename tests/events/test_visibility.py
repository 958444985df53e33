"""Staff views of the backbone: the events API, the admin pages, pruning."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import User
from core import events
from core.events.maintenance import events_prune
from core.models import DeadLetter, OutboxEvent, ProcessedEvent
from tests.factories import StaffFactory, SuperuserFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return StaffFactory()


@pytest.fixture
def some_events():
    with transaction.atomic():
        created = events.publish("payment.created", {"payment_id": "pay_1"})
        completed = events.publish("payment.completed", {"payment_id": "pay_1"})
        paid = events.publish("order.paid", {"order_id": "A-1"})
    OutboxEvent.objects.filter(pk=created.pk).update(occurred_at=timezone.now() - timedelta(days=2))
    return created, completed, paid


def get_events(api_client, user, **params):
    token = Token.objects.create(user=user)
    return api_client.get("/api/integrations/events", params, HTTP_AUTHORIZATION=f"Token {token.key}")


def test_events_api_is_for_staff_only(api_client, some_events):
    customer = UserFactory()

    assert api_client.get("/api/integrations/events").status_code == 401
    assert get_events(api_client, customer).status_code == 403


def test_events_api_lists_newest_first_with_the_envelope(api_client, staff, some_events):
    created, completed, paid = some_events

    body = get_events(api_client, staff).json()

    assert len(body["results"]) == 3
    assert [e["id"] for e in body["results"]] == [
        str(paid.event_id),
        str(completed.event_id),
        str(created.event_id),
    ]
    assert body["results"][0]["data"] == {"order_id": "A-1"}
    assert body["results"][0]["source"] == "orders"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "payment.completed"}, ["completed"]),
        ({"type": "payment."}, ["completed", "created"]),
        ({"aggregate_id": "pay_1"}, ["completed", "created"]),
        ({"occurred_before": "__yesterday__"}, ["created"]),
        ({"occurred_after": "__yesterday__", "type": "payment."}, ["completed"]),
    ],
)
def test_events_api_filters(api_client, staff, some_events, params, expected):
    names = dict(zip(["created", "completed", "paid"], some_events, strict=True))
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    params = {k: (yesterday if v == "__yesterday__" else v) for k, v in params.items()}

    body = get_events(api_client, staff, **params).json()

    assert [e["id"] for e in body["results"]] == [str(names[n].event_id) for n in expected]


def test_events_api_rejects_a_bad_date(api_client, staff):
    response = get_events(api_client, staff, occurred_after="yesterday-ish")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_outbox_admin_shows_the_lag_of_the_oldest_unpublished(client, some_events):
    admin = SuperuserFactory()
    client.force_login(admin)

    page = client.get("/admin/core/outboxevent/").content.decode()

    lag = float(re.search(r"Outbox: 3 unpublished, oldest waiting ([\d.]+)s", page).group(1))
    assert 2 * 86400 - 60 < lag < 2 * 86400 + 60  # the oldest event is two days old


def test_replay_action_needs_its_permission(client, some_events):
    envelope = some_events[2].envelope
    now = timezone.now()
    DeadLetter.objects.create(
        event_id=envelope["id"],
        event_type=envelope["type"],
        subscriber="tests.order_paid_audit",
        envelope=envelope,
        error="TransientError: boom",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
    )
    staff = StaffFactory()
    staff.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client.force_login(staff)
    assert 'value="replay"' not in client.get("/admin/core/deadletter/").content.decode()

    staff.user_permissions.add(Permission.objects.get(codename="replay_deadletter"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached per instance
    client.force_login(staff)
    assert 'value="replay"' in client.get("/admin/core/deadletter/").content.decode()


def test_system_rows_cannot_be_deleted_in_the_admin(client, some_events):
    admin = SuperuserFactory()
    client.force_login(admin)
    row = OutboxEvent.objects.first()

    assert client.get(f"/admin/core/outboxevent/{row.pk}/delete/").status_code == 403
    assert 'value="delete_selected"' not in client.get("/admin/core/outboxevent/").content.decode()


def test_a_subscriber_on_an_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="not one of the declared queues"):
        events.subscriber("order.paid", queue="order")(lambda event: None)


def test_prune_keeps_what_is_recent_or_unpublished(some_events):
    created, completed, paid = some_events
    long_ago = timezone.now() - timedelta(days=400)
    OutboxEvent.objects.filter(pk__in=[created.pk, completed.pk]).update(published_at=long_ago)
    ProcessedEvent.objects.create(event_id=created.event_id, subscriber="x")
    ProcessedEvent.objects.filter(event_id=created.event_id).update(processed_at=long_ago)
    ProcessedEvent.objects.create(event_id=completed.event_id, subscriber="x")

    result = events_prune()

    assert result == {"events": 2, "processed": 1, "dead_letters": 0}
    assert list(OutboxEvent.objects.values_list("pk", flat=True)) == [paid.pk]
    assert ProcessedEvent.objects.get().event_id == completed.event_id
