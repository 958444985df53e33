"""SMS through Twilio (SmsChannel, with Twilio's own library) and Twilio's status callbacks,
against the fake of Twilio's Messages API."""

import base64
import socket
import time
from datetime import timedelta

import pytest
from django.urls import reverse

from core.models import OutboxEvent
from notifications.channels.base import OutcomeUnknown, PermanentFailure, TemporaryFailure
from notifications.channels.sms import SmsChannel
from notifications.models import Notification
from tests.factories import UserFactory
from tests.notifications.factories import NotificationFactory
from tests.notifications.fakes.twilio import FakeTwilio

TO = "+15005550006"
WEBHOOK = "/api/notifications/webhooks/twilio"


@pytest.fixture
def fake():
    with FakeTwilio(stall_seconds=1.5) as fake:
        yield fake


@pytest.fixture
def configured(settings, fake):
    settings.TWILIO_ACCOUNT_SID = fake.account_sid
    settings.TWILIO_AUTH_TOKEN = fake.auth_token
    settings.TWILIO_FROM_NUMBER = fake.from_number
    settings.TWILIO_API_URL = fake.base_url
    settings.TWILIO_TIMEOUT_SECONDS = 2.0
    settings.SITE_URL = "http://testserver"
    return settings


@pytest.fixture
def channel():
    return SmsChannel()


def notification(*, address: str = TO, body: str = "Your booking on 3 May at 10:00 is confirmed.", **fields):
    return NotificationFactory(
        event_type="booking.confirmed",
        channel="sms",
        address=address,
        body=body,
        **{"status": "sending", **fields},
    )


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- settings and addresses -----------------------------------------------------------------


def test_configured_needs_the_account_the_token_and_the_sender(configured, channel):
    assert channel.name == "sms"
    assert channel.configured()
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"):
        value = getattr(configured, name)
        setattr(configured, name, "")
        assert not channel.configured(), name
        setattr(configured, name, value)


@pytest.mark.django_db
def test_the_address_is_the_users_phone(channel):
    assert channel.address(UserFactory(phone="+2348012345678")) == "+2348012345678"
    assert channel.address(UserFactory(phone="")) == ""


# --- send -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_send_goes_through_twilios_library_to_the_api(configured, fake, channel):
    n = notification()

    sid = channel.send(n)

    [message] = fake.messages
    assert sid == message["sid"]
    assert sid.startswith("SM") and len(sid) == 34
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    assert request.form == {
        "To": TO,
        "From": fake.from_number,
        "Body": n.body,
        "StatusCallback": f"http://testserver{WEBHOOK}?n={n.public_id}",
    }
    credentials = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert request.headers["user-agent"].startswith("twilio-python/")
    assert reverse("notifications:twilio-status") == WEBHOOK


@pytest.mark.django_db
def test_the_callback_url_follows_site_url_without_a_double_slash(configured, fake, channel):
    configured.SITE_URL = "https://shop.example.com/"
    n = notification()
    channel.send(n)
    assert fake.messages[0]["status_callback"] == f"https://shop.example.com{WEBHOOK}?n={n.public_id}"


@pytest.mark.django_db
def test_an_invalid_number_fails_for_good(configured, fake, channel):
    fake.invalid.add(TO)
    with pytest.raises(PermanentFailure, match=r"^twilio 21211: .*'To' number \+15005550006 is not a valid"):
        channel.send(notification())
    assert fake.messages == []


@pytest.mark.django_db
def test_an_unsubscribed_number_fails_for_good(configured, fake, channel):
    fake.unsubscribed.add(TO)
    with pytest.raises(PermanentFailure, match=r"^twilio 21610: .*unsubscribed recipient"):
        channel.send(notification())
    assert fake.messages == []


@pytest.mark.django_db
def test_another_refusal_of_the_request_fails_for_good(configured, fake, channel):
    configured.TWILIO_FROM_NUMBER = "+15550000000"  # not a number of the account
    with pytest.raises(PermanentFailure, match=r"^twilio 21606: "):
        channel.send(notification())


@pytest.mark.django_db
@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_error_or_rate_limit_is_temporary(configured, fake, channel, status):
    fake.fail_next(status)
    with pytest.raises(TemporaryFailure, match=rf"^twilio {status}: .*injected failure"):
        channel.send(notification())
    assert fake.messages == []


@pytest.mark.django_db
def test_a_stalled_api_is_temporary_after_the_timeout(configured, fake, channel):
    configured.TWILIO_TIMEOUT_SECONDS = 0.5
    fake.stall_next()
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match=r"^twilio did not answer: .*Timeout"):
        channel.send(notification())  # Twilio had the request: the SMS may exist
    assert time.monotonic() - started < 1.4  # the fake stalls 1.5 s


@pytest.mark.django_db
def test_an_unreachable_api_is_temporary(configured, channel):
    configured.TWILIO_API_URL = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(TemporaryFailure, match=r"^twilio unreachable: ConnectionError"):
        channel.send(notification())


@pytest.mark.django_db
def test_bad_credentials_are_temporary_and_fixed_settings_are_used_at_once(configured, fake, channel):
    """Staff fix the token and the retry goes: the client follows the settings."""
    token = configured.TWILIO_AUTH_TOKEN
    configured.TWILIO_AUTH_TOKEN = "wrong-token"
    n = notification()
    with pytest.raises(TemporaryFailure, match=r"^twilio 20003: .*Authenticate"):
        channel.send(n)
    assert fake.messages == []

    configured.TWILIO_AUTH_TOKEN = token
    assert channel.send(n) == fake.messages[0]["sid"]


# --- confirm_sent: a send whose outcome is unknown ------------------------------------------


@pytest.mark.django_db
def test_a_message_accepted_whose_answer_was_lost_is_confirmed(configured, fake, channel):
    configured.TWILIO_TIMEOUT_SECONDS = 0.5
    n = notification()
    fake.hold_after_next_create()
    with pytest.raises(OutcomeUnknown, match="Timeout"):
        channel.send(n)
    [message] = fake.messages  # Twilio has it all the same
    message["date_sent"] = None  # ...still in its queue: a DateSent filter would not see it

    assert channel.confirm_sent(n) == message["sid"]
    listed = fake.requests[-1]
    assert listed.method == "GET"
    assert {k: v[0] for k, v in listed.query.items()} == {
        "To": TO,
        "From": fake.from_number,
        "PageSize": "50",
    }


@pytest.mark.django_db
def test_deliver_never_sends_again_an_sms_whose_answer_timed_out(configured, fake, settings):
    """A slow Twilio: the timed-out send stays `sending` and is confirmed, not sent twice."""
    from notifications import delivery

    configured.TWILIO_TIMEOUT_SECONDS = 0.5
    n = notification(status="queued")
    fake.hold_after_next_create()
    assert delivery.deliver(n.pk) == "unknown"
    n.refresh_from_db()
    assert n.status == "sending" and "did not answer" in n.last_error

    later = n.lease_until + timedelta(seconds=1)
    assert delivery.deliver(n.pk, now=later) == "confirmed"
    n.refresh_from_db()
    assert (n.status, n.provider_id, len(fake.messages)) == ("sent", fake.messages[0]["sid"], 1)


@pytest.mark.django_db
def test_nothing_is_confirmed_when_twilio_has_no_such_message(configured, fake, channel):
    n = notification()
    assert channel.confirm_sent(n) is None

    channel.send(notification(body="Another text."))  # to the same number
    channel.send(notification(address="+15005550009", body=n.body))  # to another number
    assert len(fake.messages) == 2
    assert channel.confirm_sent(n) is None


@pytest.mark.django_db
def test_a_message_made_before_the_notification_is_not_confirmed(configured, fake, channel):
    n = notification()
    sid = channel.send(notification(body=n.body))
    fake.backdate(sid, days=3)
    assert channel.confirm_sent(n) is None


@pytest.mark.django_db
def test_the_same_text_sent_for_another_notification_is_not_this_one(configured, fake, channel):
    earlier = notification()
    earlier.provider_id = channel.send(earlier)
    earlier.status = "sent"
    earlier.save()
    n = notification(body=earlier.body)
    assert channel.confirm_sent(n) is None

    sid = channel.send(n)
    assert channel.confirm_sent(n) == sid


@pytest.mark.django_db
@pytest.mark.parametrize("failure", ["credentials", "500"])
def test_asking_twilio_fails_temporarily(configured, fake, channel, failure):
    if failure == "credentials":
        configured.TWILIO_AUTH_TOKEN = "wrong-token"
    else:
        fake.fail_next(500)
    with pytest.raises(TemporaryFailure, match=r"^twilio (20003|500): "):
        channel.confirm_sent(notification())


@pytest.mark.django_db
def test_asking_a_stalled_twilio_fails_temporarily(configured, fake, channel):
    configured.TWILIO_TIMEOUT_SECONDS = 0.5
    fake.stall_next()
    with pytest.raises(TemporaryFailure, match="Timeout"):
        channel.confirm_sent(notification())


# --- the status callback webhook ------------------------------------------------------------


def sent(channel: SmsChannel, **fields) -> Notification:
    """A notification sent through the fake, recorded `sent` with Twilio's sid."""
    n = notification(**fields)
    n.provider_id = channel.send(n)
    n.status = "sent"
    n.save()
    return n


def post(client, url: str, params: dict[str, str], signature: str | None):
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature is not None else {}
    return client.post(url, params, **headers)


def unchanged(n: Notification) -> bool:
    before = {k: v for k, v in vars(n).items() if not k.startswith("_")}
    after = {k: v for k, v in vars(Notification.objects.get(pk=n.pk)).items() if not k.startswith("_")}
    return before == after


@pytest.mark.django_db
def test_a_signed_delivered_callback_marks_the_message_delivered(configured, fake, channel, client):
    n = sent(channel)
    url, params, signature = fake.signed_status_callback(fake.messages[0], "delivered")

    response = post(client, url, params, signature)

    assert response.status_code == 204
    n.refresh_from_db()
    assert n.status == "delivered"
    assert n.delivered_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_an_undelivered_callback_marks_the_message_undelivered_with_the_error(
    configured, fake, channel, client, status
):
    n = sent(channel)
    url, params, signature = fake.signed_status_callback(fake.messages[0], status, error_code=30003)

    assert post(client, url, params, signature).status_code == 204

    n.refresh_from_db()
    assert n.status == "undelivered"
    assert n.failed_at is not None
    assert "twilio 30003" in n.last_error
    assert OutboxEvent.objects.filter(type="notification.failed").count() == 1


@pytest.mark.django_db
def test_a_callback_finds_a_message_whose_sid_was_never_recorded(configured, fake, channel, client):
    """Its sender died after Twilio accepted it: the callback's ?n= names the row."""
    n = notification()
    channel.send(n)
    [message] = fake.messages
    url, params, signature = fake.signed_status_callback(message, "delivered")

    assert post(client, url, params, signature).status_code == 204

    n.refresh_from_db()
    assert (n.status, n.provider_id) == ("delivered", message["sid"])


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["queued", "sending", "sent", "accepted"])
def test_a_status_on_the_way_is_acknowledged_and_changes_nothing(configured, fake, channel, client, status):
    n = sent(channel)
    url, params, signature = fake.signed_status_callback(fake.messages[0], status)
    assert post(client, url, params, signature).status_code == 204
    assert unchanged(n)


@pytest.mark.django_db
def test_a_forged_signature_is_refused(configured, fake, channel, client):
    n = sent(channel)
    url, params, _ = fake.signed_status_callback(fake.messages[0], "delivered")
    _, _, forged = fake.signed_status_callback(fake.messages[0], "delivered", token="not-the-token")
    assert post(client, url, params, forged).status_code == 403
    assert post(client, url, params, "bm90IGEgc2lnbmF0dXJl").status_code == 403
    assert unchanged(n)


@pytest.mark.django_db
def test_a_missing_signature_is_refused(configured, fake, channel, client):
    n = sent(channel)
    url, params, _ = fake.signed_status_callback(fake.messages[0], "delivered")
    assert post(client, url, params, None).status_code == 403
    assert post(client, url, params, "").status_code == 403
    assert unchanged(n)


@pytest.mark.django_db
def test_a_signature_of_other_fields_or_another_url_is_refused(configured, fake, channel, client):
    n = sent(channel)
    url, params, signature = fake.signed_status_callback(fake.messages[0], "delivered", error_code=None)
    assert post(client, url, {**params, "MessageStatus": "undelivered"}, signature).status_code == 403
    assert post(client, url, {**params, "ErrorCode": "30003"}, signature).status_code == 403
    other = notification()
    assert post(client, f"{WEBHOOK}?n={other.public_id}", params, signature).status_code == 403
    assert unchanged(n)
    assert unchanged(other)


@pytest.mark.django_db
def test_nothing_is_accepted_without_an_auth_token(configured, fake, channel, client):
    n = sent(channel)
    url, params, signature = fake.signed_status_callback(fake.messages[0], "delivered")
    configured.TWILIO_AUTH_TOKEN = ""
    assert post(client, url, params, signature).status_code == 403
    assert unchanged(n)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_is_allowed(configured, fake, channel, client, method):
    n = sent(channel)
    url, _, signature = fake.signed_status_callback(fake.messages[0], "delivered")
    response = getattr(client, method)(url, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 405
    assert unchanged(n)


@pytest.mark.django_db
def test_a_callback_for_an_unknown_message_is_acknowledged_and_changes_nothing(
    configured, fake, channel, client
):
    n = sent(channel)
    stranger = {
        "sid": "SM" + "0" * 32,
        "from": fake.from_number,
        "to": TO,
        "status_callback": f"http://testserver{WEBHOOK}",
    }
    url, params, signature = fake.signed_status_callback(stranger, "delivered")
    assert post(client, url, params, signature).status_code == 204

    # Naming our row, but for a sid that is not its own: not ours either.
    stranger["status_callback"] = f"http://testserver{WEBHOOK}?n={n.public_id}"
    url, params, signature = fake.signed_status_callback(stranger, "undelivered", error_code=30003)
    assert post(client, url, params, signature).status_code == 204

    assert unchanged(n)
    assert not OutboxEvent.objects.filter(type="notification.failed").exists()


@pytest.mark.django_db
def test_the_signature_is_checked_against_site_url_behind_a_proxy(configured, fake, channel, client):
    """Twilio signs the public https address; the request reaches Django as plain http."""
    configured.SITE_URL = "https://shop.example.com"
    n = sent(channel)
    url, params, signature = fake.signed_status_callback(fake.messages[0], "delivered")
    assert url.startswith("https://shop.example.com/")

    assert post(client, url.removeprefix("https://shop.example.com"), params, signature).status_code == 204
    n.refresh_from_db()
    assert n.status == "delivered"
