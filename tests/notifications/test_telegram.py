"""Telegram: the channel against the fake Bot API, linking a chat through the webhook, and the
webhook's management command."""

import socket
from datetime import time, timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from notifications.channels.base import PermanentFailure, TemporaryFailure
from notifications.channels.telegram import TelegramChannel
from notifications.models import Notification, Preference, TelegramLinkToken
from notifications.telegram import TelegramNotConfigured, telegram_link_start
from tests.factories import UserFactory
from tests.notifications.factories import NotificationFactory
from tests.notifications.fakes.telegram import FakeTelegram, html_problem

pytestmark = pytest.mark.django_db

SECRET = "whsec-0123456789_abcdefghij"
CHAT = 4242424242
SITE = "https://shop.example.com"


@pytest.fixture
def fake(settings):
    with FakeTelegram() as fake:
        settings.TELEGRAM_API_URL = fake.base_url
        settings.TELEGRAM_BOT_TOKEN = fake.token
        settings.TELEGRAM_BOT_USERNAME = fake.username
        settings.TELEGRAM_WEBHOOK_SECRET = SECRET
        settings.TELEGRAM_TIMEOUT_SECONDS = 2.0
        settings.SITE_URL = SITE
        yield fake


@pytest.fixture
def channel() -> TelegramChannel:
    return TelegramChannel()


def linked_user(chat_id: int | str = CHAT, **fields):
    user = UserFactory(**fields)
    Preference.objects.create(user=user, telegram_chat_id=str(chat_id), telegram_linked_at=timezone.now())
    return user


def notification(user, chat_id: int | str = CHAT, body: str = "<b>Paid</b>: order #42") -> Notification:
    return NotificationFactory(
        user=user, channel="telegram", address=str(chat_id), body=body, status="sending"
    )


def chat_of(user) -> str:
    return Preference.objects.get(user=user).telegram_chat_id


def post_update(client, update: dict, secret: str | None = SECRET):
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return client.post(
        reverse("notifications:telegram-webhook"), update, content_type="application/json", headers=headers
    )


def start_token(url: str) -> str:
    return urlsplit(url).query.removeprefix("start=")


# --- the channel ----------------------------------------------------------------------------


def test_configured_with_a_token_only(settings, channel):
    settings.TELEGRAM_BOT_TOKEN = ""
    assert channel.configured() is False
    settings.TELEGRAM_BOT_TOKEN = "123:abc"
    assert channel.configured() is True


def test_address_is_the_linked_chat_or_nothing(settings, channel):
    assert channel.address(UserFactory()) == ""  # no preferences at all
    unlinked = UserFactory()
    Preference.objects.create(user=unlinked)
    assert channel.address(unlinked) == ""
    assert channel.address(linked_user()) == str(CHAT)
    settings.TELEGRAM_STAFF_CHAT_ID = "-1001234567890"
    assert channel.staff_address() == "-1001234567890"


def test_send_gives_telegram_s_message_id(fake, channel):
    user = linked_user()
    message_id = channel.send(notification(user))

    [sent] = fake.messages[str(CHAT)]
    assert message_id == str(sent["message_id"])
    assert sent["chat_id"] == str(CHAT)
    assert sent["text"] == "<b>Paid</b>: order #42"
    assert sent["parse_mode"] == "HTML"
    assert sent["link_preview_options"] == {"is_disabled": True}
    assert channel.send(notification(user)) != message_id  # each message its own id


@pytest.mark.parametrize(
    ("gone", "error_code", "description"),
    [
        ("block", 403, "Forbidden: bot was blocked by the user"),
        ("deactivate", 403, "Forbidden: user is deactivated"),
        ("forget", 400, "Bad Request: chat not found"),
    ],
)
def test_a_chat_that_cannot_receive_fails_for_good_and_is_unlinked(
    fake, channel, gone, error_code, description
):
    user, other = linked_user(), linked_user(chat_id=777)
    getattr(fake, gone)(CHAT)

    with pytest.raises(PermanentFailure) as failure:
        channel.send(notification(user))

    assert str(error_code) in str(failure.value)
    assert description in str(failure.value)
    preference = Preference.objects.get(user=user)
    assert (preference.telegram_chat_id, preference.telegram_linked_at) == ("", None)
    assert chat_of(other) == "777"  # other chats stay linked
    assert channel.address(user) == ""
    assert str(CHAT) not in fake.messages


def test_too_many_requests_is_retried_after_what_telegram_says(fake, channel):
    user = linked_user()
    fake.flood_next(retry_after=7)

    with pytest.raises(TemporaryFailure) as failure:
        channel.send(notification(user))

    assert failure.value.retry_after == 7
    assert "429" in str(failure.value)
    assert chat_of(user) == str(CHAT)
    assert channel.send(notification(user))  # the next call goes


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_temporary(fake, channel, status):
    user = linked_user()
    fake.fail_next(status)
    with pytest.raises(TemporaryFailure) as failure:
        channel.send(notification(user))
    assert str(status) in str(failure.value)
    assert failure.value.retry_after is None
    assert chat_of(user) == str(CHAT)


def test_a_stalled_telegram_is_a_temporary_failure_after_the_timeout(fake, channel, settings):
    settings.TELEGRAM_TIMEOUT_SECONDS = 0.3
    fake.stall_seconds = 1.5
    fake.stall_next()
    with pytest.raises(TemporaryFailure, match="timed out"):
        channel.send(notification(linked_user()))


def test_an_unreachable_telegram_is_temporary_and_the_error_hides_the_token(fake, channel, settings):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.TELEGRAM_API_URL = f"http://127.0.0.1:{port}"

    with pytest.raises(TemporaryFailure) as failure:
        channel.send(notification(linked_user()))

    assert "ConnectionError" in str(failure.value)
    assert "/bot<token>/sendMessage" in str(failure.value)  # the address, redacted
    assert fake.token not in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_html_telegram_cannot_parse_fails_for_good_and_keeps_the_chat(fake, channel):
    user = linked_user()
    with pytest.raises(PermanentFailure) as failure:
        channel.send(notification(user, body="<b>Paid: order #42"))
    assert "400" in str(failure.value)
    assert "can't parse entities" in str(failure.value)
    assert chat_of(user) == str(CHAT)


def test_a_wrong_token_fails_for_good(fake, channel, settings):
    settings.TELEGRAM_BOT_TOKEN = "7012345678:AAWrongTokenWrongTokenWrongToken01"
    with pytest.raises(PermanentFailure, match="404: Not Found") as failure:
        channel.send(notification(linked_user()))
    assert settings.TELEGRAM_BOT_TOKEN not in str(failure.value)


@pytest.mark.parametrize("failing", ["block", "forget", "flood", "5xx", "stall", "html"])
def test_no_error_shows_the_token(fake, channel, settings, failing):
    settings.TELEGRAM_TIMEOUT_SECONDS = 0.3
    fake.stall_seconds = 1.0
    body = "<b>Paid"
    if failing != "html":
        body = "<b>Paid</b>"
        {
            "block": lambda: fake.block(CHAT),
            "forget": lambda: fake.forget(CHAT),
            "flood": lambda: fake.flood_next(3),
            "5xx": lambda: fake.fail_next(502),
            "stall": lambda: fake.stall_next(),
        }[failing]()
    with pytest.raises((PermanentFailure, TemporaryFailure)) as failure:
        channel.send(notification(linked_user(), body=body))
    assert fake.token not in str(failure.value)
    assert fake.token.split(":")[1] not in repr(failure.value.args)


def test_the_fake_checks_html_loosely():
    assert html_problem('<b>Paid</b> <a href="https://x.example">order</a> &lt;42&gt;') == ""
    assert "end tag" in html_problem("<b>Paid")
    assert "Unsupported start tag" in html_problem("<div>Paid</div>")
    assert "Unmatched end tag" in html_problem("<b><i>Paid</b></i>")
    assert "Unsupported start tag" in html_problem("1 < 2")


# --- linking a chat -------------------------------------------------------------------------


def test_a_deep_link_binds_the_chat_through_the_webhook(fake, client):
    user = UserFactory()
    before = timezone.now()
    url, expires_at = telegram_link_start(user)

    assert url.startswith(f"https://t.me/{fake.username}?start=")
    token = start_token(url)
    assert 1 <= len(token) <= 64
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    assert before + timedelta(minutes=29) < expires_at <= timezone.now() + timedelta(minutes=30)

    response = post_update(client, fake.message_update(CHAT, f"/start {token}"))

    assert response.status_code == 200
    assert response.json() == {
        "method": "sendMessage",
        "chat_id": CHAT,
        "text": "Your account is linked: notifications will arrive in this chat.",
    }
    preference = Preference.objects.get(user=user)
    assert preference.telegram_chat_id == str(CHAT)
    assert preference.telegram_linked_at is not None
    assert TelegramLinkToken.objects.get(token=token).used_at is not None
    assert TelegramChannel().address(user) == str(CHAT)


def test_the_confirmation_is_in_the_user_s_language(fake, client):
    user = UserFactory(preferred_language="ru")
    url, _ = telegram_link_start(user)
    response = post_update(
        client, fake.message_update(CHAT, f"/start {start_token(url)}", language_code="en")
    )
    assert response.json()["text"] == "Аккаунт привязан: уведомления будут приходить в этот чат."


def test_linking_keeps_the_user_s_other_preferences(fake, client):
    user = UserFactory()
    Preference.objects.create(user=user, channels={"marketing": []})
    url, _ = telegram_link_start(user)
    post_update(client, fake.message_update(CHAT, f"/start {start_token(url)}"))
    preference = Preference.objects.get(user=user)
    assert (preference.telegram_chat_id, preference.channels) == (str(CHAT), {"marketing": []})


def test_linking_a_new_customer_gives_them_the_default_quiet_hours(fake, client, settings):
    settings.NOTIFICATIONS_QUIET_HOURS = "22:00-08:00"
    user = UserFactory()
    url, _ = telegram_link_start(user)
    post_update(client, fake.message_update(CHAT, f"/start {start_token(url)}"))
    preference = Preference.objects.get(user=user)
    assert (preference.quiet_hours_start, preference.quiet_hours_end) == (time(22), time(8))


def test_a_chat_linked_elsewhere_moves_to_the_new_account(fake, client):
    before = linked_user()
    user = UserFactory()
    url, _ = telegram_link_start(user)
    post_update(client, fake.message_update(CHAT, f"/start {start_token(url)}"))
    assert chat_of(user) == str(CHAT)
    assert chat_of(before) == ""


def test_a_token_is_used_once(fake, client):
    user = UserFactory()
    url, _ = telegram_link_start(user)
    post_update(client, fake.message_update(CHAT, f"/start {start_token(url)}"))

    response = post_update(client, fake.message_update(555, f"/start {start_token(url)}"))

    assert response.status_code == 200
    assert response.json()["text"].startswith("This link is no longer valid")
    assert response.json()["chat_id"] == 555
    assert chat_of(user) == str(CHAT)
    assert not Preference.objects.filter(telegram_chat_id="555").exists()


def test_an_expired_token_binds_nothing(fake, client):
    user = UserFactory()
    url, _ = telegram_link_start(user)
    TelegramLinkToken.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = post_update(
        client, fake.message_update(CHAT, f"/start {start_token(url)}", language_code="ru")
    )

    assert response.json()["text"] == "Эта ссылка больше не действует. Получите новую в настройках аккаунта."
    assert not Preference.objects.filter(user=user).exists()
    assert TelegramLinkToken.objects.get(user=user).used_at is None


@pytest.mark.parametrize("payload", ["UnknownToken_0123456789abcdefghij", "x" * 65, "a/b"])
def test_an_unknown_or_malformed_token_binds_nothing(fake, client, payload):
    response = post_update(client, fake.message_update(CHAT, f"/start {payload}"))
    assert response.status_code == 200
    assert response.json()["text"].startswith("This link is no longer valid")
    assert not Preference.objects.exists()


def test_a_new_link_drops_the_user_s_spent_tokens(fake, client):
    user = UserFactory()
    used, _ = telegram_link_start(user)
    post_update(client, fake.message_update(CHAT, f"/start {start_token(used)}"))
    pending, _ = telegram_link_start(user)
    latest, _ = telegram_link_start(user)
    assert set(TelegramLinkToken.objects.filter(user=user).values_list("token", flat=True)) == {
        start_token(pending),
        start_token(latest),
    }


def test_no_deep_link_without_the_bot_s_token_and_username(settings):
    user = UserFactory()
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_BOT_USERNAME = "123:abc", ""
    with pytest.raises(TelegramNotConfigured):
        telegram_link_start(user)
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_BOT_USERNAME = "", "fulfil_test_bot"
    with pytest.raises(TelegramNotConfigured):
        telegram_link_start(user)
    assert not TelegramLinkToken.objects.exists()


@pytest.mark.parametrize("secret", [None, "", "whsec-forged", SECRET + "x"])
def test_an_update_without_the_right_secret_is_refused(fake, client, secret):
    user = UserFactory()
    url, _ = telegram_link_start(user)

    response = post_update(client, fake.message_update(CHAT, f"/start {start_token(url)}"), secret=secret)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not Preference.objects.exists()
    assert TelegramLinkToken.objects.get(user=user).used_at is None


def test_without_a_secret_configured_every_update_is_refused(fake, client, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    assert post_update(client, fake.message_update(CHAT, "/start abc"), secret="").status_code == 403


def test_the_webhook_takes_post_only(fake, client):
    response = client.get(
        reverse("notifications:telegram-webhook"), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert response.status_code == 405


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_an_update_is_a_400(fake, client, body):
    response = client.post(
        reverse("notifications:telegram-webhook"),
        body,
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status_code == 400


def test_a_user_who_blocks_the_bot_is_unlinked(fake, client):
    user, other = linked_user(), linked_user(chat_id=777)
    response = post_update(client, fake.kicked_update(CHAT))
    assert response.status_code == 200
    assert response.content == b""
    assert chat_of(user) == ""
    assert Preference.objects.get(user=user).telegram_linked_at is None
    assert chat_of(other) == "777"


def test_a_plain_start_gets_help_and_other_messages_nothing(fake, client):
    response = post_update(client, fake.message_update(CHAT, "/start"))
    assert response.json()["text"].startswith("To receive notifications here")
    response = post_update(client, fake.message_update(CHAT, "hello"))
    assert (response.status_code, response.content) == (200, b"")
    response = post_update(client, {"update_id": 1, "edited_message": {"text": "x"}})
    assert (response.status_code, response.content) == (200, b"")


def test_a_group_chat_is_never_linked(fake, client):
    user = UserFactory()
    url, _ = telegram_link_start(user)
    response = post_update(
        client, fake.message_update(-100555, f"/start {start_token(url)}", chat_type="group")
    )
    assert (response.status_code, response.content) == (200, b"")
    assert not Preference.objects.exists()
    assert TelegramLinkToken.objects.get(user=user).used_at is None


def test_a_malformed_update_is_answered_not_crashed_on(fake, client):
    for update in (
        {"update_id": 1, "message": {"text": "/start abc"}},
        {"update_id": 2, "message": {"chat": "x", "text": "/start abc"}},
        {"update_id": 3, "message": {"chat": {"id": 1, "type": "private"}, "text": 5}},
        {"update_id": 4, "my_chat_member": {"chat": {"id": CHAT}, "new_chat_member": None}},
        {"update_id": 6, "my_chat_member": {"chat": {"id": CHAT}, "new_chat_member": "kicked"}},
        {"update_id": 5, "my_chat_member": {"chat": {"id": True}, "new_chat_member": {"status": "kicked"}}},
    ):
        assert post_update(client, update).status_code == 200


# --- manage.py telegram_webhook -------------------------------------------------------------


def test_set_points_the_bot_at_the_webhook_with_the_secret(fake, client):
    out = StringIO()
    call_command("telegram_webhook", "set", stdout=out)

    assert fake.webhook == {
        "url": f"{SITE}/api/notifications/webhooks/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "my_chat_member"],
        "drop_pending_updates": False,
    }
    assert f"{SITE}/api/notifications/webhooks/telegram" in out.getvalue()

    # What Telegram then posts there, with that secret, is taken.
    user = UserFactory()
    url, _ = telegram_link_start(user)
    update = fake.message_update(CHAT, f"/start {start_token(url)}")
    response = client.post(
        urlsplit(fake.webhook["url"]).path,
        update,
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": fake.webhook["secret_token"]},
    )
    assert response.status_code == 200
    assert chat_of(user) == str(CHAT)


def test_info_and_delete(fake):
    call_command("telegram_webhook", "set", "--drop-pending-updates", stdout=StringIO())
    assert fake.webhook["drop_pending_updates"] is True
    out = StringIO()
    call_command("telegram_webhook", "info", stdout=out)
    assert f'"url": "{SITE}/api/notifications/webhooks/telegram"' in out.getvalue()

    call_command("telegram_webhook", "delete", stdout=StringIO())
    assert fake.webhook == {}


def test_set_reports_what_telegram_refuses(fake, settings):
    settings.SITE_URL = "http://testserver"
    with pytest.raises(CommandError, match="An HTTPS URL must be provided for webhook") as failure:
        call_command("telegram_webhook", "set", stdout=StringIO())
    assert "400" in str(failure.value)
    assert fake.token not in str(failure.value)
    assert fake.webhook == {}


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TELEGRAM_BOT_TOKEN", "", "TELEGRAM_BOT_TOKEN is not set"),
        ("TELEGRAM_WEBHOOK_SECRET", "", "TELEGRAM_WEBHOOK_SECRET is not set"),
        ("TELEGRAM_WEBHOOK_SECRET", "not a secret!", "1-256 characters"),
        ("SITE_URL", "", "SITE_URL is not set"),
    ],
)
def test_set_needs_its_settings(fake, settings, setting, value, message):
    setattr(settings, setting, value)
    with pytest.raises(CommandError, match=message):
        call_command("telegram_webhook", "set", stdout=StringIO())
    assert fake.webhook == {}
    assert fake.requests == []


def test_a_wrong_token_is_a_clear_command_error(fake, settings):
    settings.TELEGRAM_BOT_TOKEN = "7012345678:AAWrongTokenWrongTokenWrongToken01"
    with pytest.raises(CommandError, match="getWebhookInfo: error_code 404: Not Found") as failure:
        call_command("telegram_webhook", "info", stdout=StringIO())
    assert settings.TELEGRAM_BOT_TOKEN not in str(failure.value)
