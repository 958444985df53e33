"""SMS through Twilio's Messages API, with Twilio's own Python library.

The library's HTTP client is ours so that TWILIO_API_URL (a proxy, or a local fake in tests)
replaces https://api.twilio.com, and TWILIO_TIMEOUT_SECONDS bounds every request. Each
message asks for status callbacks at notifications.webhooks.twilio with our notification's
public id in the query, so a callback finds its row even if the sid was never recorded.
"""

import functools
import json
from datetime import timedelta
from typing import TYPE_CHECKING

import requests
from django.conf import settings
from django.urls import reverse
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from notifications.channels.base import (
    Channel,
    ChannelError,
    OutcomeUnknown,
    PermanentFailure,
    TemporaryFailure,
)

if TYPE_CHECKING:
    from notifications.models import Notification

TWILIO_API = "https://api.twilio.com"

# Twilio's error codes for a number that can never receive our SMS (whatever the HTTP status):
# https://www.twilio.com/docs/api/errors
UNREACHABLE_NUMBER_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21214,  # 'To' phone number cannot be reached
        21217,  # phone number does not appear to be valid
        21401,  # invalid phone number
        21407,  # this phone number type does not support SMS
        21408,  # sending to this number's region is not enabled
        21604,  # 'To' phone number is required
        21606,  # our 'From' number cannot message this destination
        21610,  # the recipient replied STOP (unsubscribed)
        21612,  # Twilio cannot route to this number
        21614,  # 'To' number is not a mobile number
    }
)


class RoutedHttpClient(TwilioHttpClient):
    """Twilio's HTTP client, sending what is meant for api.twilio.com to `api_url` instead."""

    def __init__(self, api_url: str, timeout: float):
        super().__init__(timeout=timeout)
        self.api_url = api_url.rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ) -> Response:
        if self.api_url and url.startswith(TWILIO_API + "/"):
            url = self.api_url + url.removeprefix(TWILIO_API)
        return super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


@functools.lru_cache(maxsize=8)
def _client(account_sid: str, auth_token: str, api_url: str, timeout: float) -> Client:
    """One client (and connection pool) per process and configuration: keyed on the settings'
    values, so a change of settings (as tests make) gets a client of its own."""
    return Client(account_sid, auth_token, http_client=RoutedHttpClient(api_url, timeout))


def twilio_client() -> Client:
    return _client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_API_URL,
        settings.TWILIO_TIMEOUT_SECONDS,
    )


def status_callback_url(notification: "Notification") -> str:
    path = reverse("notifications:twilio-status")
    return f"{settings.SITE_URL.rstrip('/')}{path}?n={notification.public_id}"


def _failure(exc: Exception) -> ChannelError:
    """What a failed request to Twilio means for the message, worded for the delivery log."""
    if isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError):
        # Twilio had the request and did not answer in time: the SMS may exist.
        return OutcomeUnknown(f"twilio did not answer: {type(exc).__name__}: {exc}")
    if isinstance(exc, requests.RequestException):  # not connected: nothing reached Twilio
        return TemporaryFailure(f"twilio unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, TwilioRestException):
        status, code, message = exc.status, exc.code, exc.msg
    elif isinstance(exc, TwilioServiceException):
        status, code, message = exc.status, exc.code, exc.detail or exc.title
    elif len(exc.args) > 1 and isinstance(exc.args[1], Response):  # a page of a list refused
        status, code, message = _page_error(exc.args[0], exc.args[1])
    else:
        return TemporaryFailure(f"twilio: {exc}")
    text = f"twilio {code}: {message}" if code else f"twilio HTTP {status}: {message}"
    if code in UNREACHABLE_NUMBER_CODES:
        return PermanentFailure(text)
    if status == 429 or status >= 500 or status in (401, 403):  # bad credentials: staff fix them
        return TemporaryFailure(text)
    if 400 <= status < 500:
        return PermanentFailure(text)
    return TemporaryFailure(text)


def _page_error(message: str, response: Response) -> tuple[int, int | None, str]:
    """(status, code, message) of a refused list request, read as the library reads a refused
    create (it raises a bare TwilioException with the response for a page)."""
    status = response.status_code
    try:
        body = json.loads(response.text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return status, status, message
    return status, body.get("code", status), f"{message}: {body.get('message', '')}"


class SmsChannel(Channel):
    name = "sms"

    def configured(self) -> bool:
        return bool(
            settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN and settings.TWILIO_FROM_NUMBER
        )

    def address(self, user, preference=None) -> str:
        return user.phone or ""

    def send(self, notification: "Notification") -> str:
        try:
            message = twilio_client().messages.create(
                to=notification.address,
                from_=settings.TWILIO_FROM_NUMBER,
                body=notification.body,
                status_callback=status_callback_url(notification),
            )
        except (TwilioException, requests.RequestException) as exc:
            raise _failure(exc) from exc
        return message.sid

    def confirm_sent(self, notification: "Notification") -> str | None:
        """The sid of a message Twilio has from us to this number with this body, made since
        the notification was written, if any.

        The newest messages to the number are read without a date filter: Twilio's DateSent
        filter misses a message still waiting in its queue (not sent yet), which is exactly
        the one a sender that died or timed out may have left. A message whose sid another
        notification already holds (an identical text sent earlier) is not this one. Any
        failure to ask is temporary: the question is asked again.
        """
        since = notification.created_at - timedelta(minutes=5)  # our clock and Twilio's may differ
        try:
            messages = twilio_client().messages.list(
                to=notification.address, from_=settings.TWILIO_FROM_NUMBER, limit=50
            )
        except (TwilioException, requests.RequestException) as exc:
            raise TemporaryFailure(str(_failure(exc))) from exc
        from notifications.models import Notification  # here: channels may be imported before apps are ready

        candidates = [
            m.sid
            for m in messages
            if m.body == notification.body and (m.date_created is None or m.date_created >= since)
        ]
        if not candidates:
            return None
        taken = set(
            Notification.objects.filter(channel=self.name, provider_id__in=candidates)
            .exclude(pk=notification.pk)
            .values_list("provider_id", flat=True)
        )
        return next((sid for sid in candidates if sid not in taken), None)
