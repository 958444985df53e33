"""The notifications API: own messages only (staff: all, with filters), read marks,
preferences, a staff message on a channel, the Telegram deep link."""

import pytest
from rest_framework.test import APIClient

from notifications.models import Notification, Preference
from tests.factories import StaffFactory, UserFactory
from tests.notifications.factories import NotificationFactory

pytestmark = pytest.mark.django_db
Status = Notification.Status


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def message(user, channel: str = "inapp", **fields) -> Notification:
    address = user.email if channel == "email" else str(user.pk)
    return NotificationFactory(user=user, channel=channel, address=address, **fields)


def test_a_customer_sees_only_their_own_messages_and_staff_see_all_with_details():
    anna, boris, staff = UserFactory(), UserFactory(), StaffFactory()
    mine = message(anna)
    message(anna, channel="email", status=Status.FAILED, last_error="smtp 550")
    theirs = message(boris)

    listed = client_for(anna).get("/api/notifications").json()
    assert {m["id"] for m in listed["results"]} == {
        mine.public_id,
        Notification.objects.get(channel="email").public_id,
    }
    assert "address" not in listed["results"][0] and "last_error" not in listed["results"][0]
    assert client_for(anna).get(f"/api/notifications/{theirs.public_id}").status_code == 404
    assert client_for(anna).post(f"/api/notifications/{theirs.public_id}/read").status_code == 404

    everything = client_for(staff).get("/api/notifications").json()
    assert everything["count"] == 3
    failed = (
        client_for(staff).get("/api/notifications", {"status": "failed", "user": anna.pk}).json()["results"]
    )
    assert [(m["channel"], m["last_error"], m["address"]) for m in failed] == [
        ("email", "smtp 550", anna.email)
    ]
    assert client_for(staff).get("/api/notifications", {"channel": "fax"}).status_code == 400
    assert APIClient().get("/api/notifications").status_code == 401


def test_the_inbox_is_marked_read_once():
    anna = UserFactory()
    first, second = message(anna), message(anna)
    api = client_for(anna)

    read = api.post(f"/api/notifications/{first.public_id}/read").json()
    again = api.post(f"/api/notifications/{first.public_id}/read").json()

    assert read["read"] is True and again["read_at"] == read["read_at"]
    unread = api.get("/api/notifications", {"channel": "inapp", "unread": "true"}).json()["results"]
    assert [m["id"] for m in unread] == [second.public_id]


def test_preferences_default_then_change_with_checks():
    anna = UserFactory()
    api = client_for(anna)

    defaults = api.get("/api/notifications/preferences").json()
    assert defaults["channels"]["marketing"] == ["email", "inapp"]
    assert defaults["telegram_linked"] is False
    assert not Preference.objects.exists()  # reading creates nothing

    changed = api.patch(
        "/api/notifications/preferences",
        {
            "channels": {"transactional": ["inapp", "email"]},
            "quiet_hours_start": "21:30",
            "quiet_hours_end": "07:00",
            "timezone": "Europe/Moscow",
        },
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    body = changed.json()
    assert body["channels"]["transactional"] == ["email", "inapp"]
    assert body["channels"]["reminders"] == ["email", "sms", "telegram", "inapp"]  # untouched
    assert (body["quiet_hours_start"], body["timezone"]) == ("21:30:00", "Europe/Moscow")

    for bad in (
        {"channels": {"transactional": ["fax"]}},
        {"channels": {"spam": ["email"]}},
        {"timezone": "Mars/Olympus"},
        {"timezone": "Europe"},  # a folder of the zone database, not a zone
        {"timezone": "a" * 300},
        {"quiet_hours_start": None, "quiet_hours_end": "07:00"},
    ):
        response = api.patch("/api/notifications/preferences", bad, format="json")
        assert response.status_code == 400, (bad, response.json())
    assert Preference.objects.get(user=anna).quiet_hours_start.isoformat() == "21:30:00"


def test_staff_send_a_message_on_a_channel_and_customers_cannot(settings, smtp_server):
    anna, staff = UserFactory(email="anna@example.com", phone=""), StaffFactory()
    api = client_for(staff)

    sent = api.post(
        "/api/notifications/send",
        {"user": anna.pk, "channel": "inapp", "subject": "Hello", "body": "Testing the inbox"},
        format="json",
    )
    assert sent.status_code == 201, sent.json()
    assert sent.json()["status"] == "delivered" and sent.json()["rule"] == "manual"
    assert client_for(anna).get("/api/notifications").json()["results"][0]["body"] == "Testing the inbox"

    no_phone = api.post(
        "/api/notifications/send", {"user": anna.pk, "channel": "sms", "body": "x"}, format="json"
    )
    assert no_phone.status_code == 422 and "not configured" in no_phone.json()["message"]
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC1", "t", "+1500"
    no_phone = api.post(
        "/api/notifications/send", {"user": anna.pk, "channel": "sms", "body": "x"}, format="json"
    )
    assert no_phone.status_code == 422 and "no sms address" in no_phone.json()["message"]

    forbidden = client_for(anna).post(
        "/api/notifications/send", {"user": anna.pk, "channel": "inapp", "body": "x"}, format="json"
    )
    assert forbidden.status_code == 403
    assert Notification.objects.count() == 1


def test_the_telegram_link_is_a_deep_link_or_a_clear_503(settings):
    api = client_for(UserFactory())
    assert api.post("/api/notifications/telegram/link").json()["code"] == "telegram_not_configured"

    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_BOT_USERNAME = "123:abc", "shop_bot"
    link = api.post("/api/notifications/telegram/link")
    assert link.status_code == 201
    assert link.json()["url"].startswith("https://t.me/shop_bot?start=")
