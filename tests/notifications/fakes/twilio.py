"""A fake of Twilio's Messages API (2010-04-01) and of its signed status callbacks.

It checks what Twilio checks: HTTP basic auth with the account sid and auth token (and the
sid in the path), a From number of the account, a To number that can receive (numbers marked
`invalid` get 21211, `unsubscribed` ones 21610), a body. An accepted message is answered
`queued` and then, as at Twilio within a second, `sent` with a date_sent; `messages` keeps
them, oldest first, with the StatusCallback asked for. Listing filters on To, From and
DateSent (dates, as Twilio does), newest first, in Twilio's page shape.

A test can lose a request before it is handled (fail_next, stall_next), or let a message be
made and its answer be lost: `hold_after_next_create` returns an Event the answer waits for,
past the client's timeout.

    with FakeTwilio() as fake:
        settings.TWILIO_API_URL = fake.base_url
        url, params, signature = fake.signed_status_callback(fake.messages[0], "delivered")
"""

import base64
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import requests
from twilio.request_validator import RequestValidator

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

API_VERSION = "2010-04-01"
MESSAGES = rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$"
HOLD_LIMIT_SECONDS = 30.0  # a held answer is given anyway after this, so no thread waits forever
PRIVATE = ("status_callback",)  # kept with a message, never shown by the API


def _error(status: int, code: int, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        **extra,
    }


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC))


def _sent_on_or_after(message: dict[str, Any], day: date) -> bool:
    """Twilio's DateSent> filter: on dates (UTC); a message not sent yet is never found."""
    return bool(message["date_sent"]) and parsedate_to_datetime(message["date_sent"]).date() >= day


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in PRIVATE}


@dataclass
class FakeTwilio(FakeProvider):
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    from_number: str = "+15017122661"
    invalid: set[str] = field(default_factory=set)  # To numbers refused with 21211
    unsubscribed: set[str] = field(default_factory=set)  # To numbers that replied STOP: 21610
    messages: list[dict[str, Any]] = field(default_factory=list)  # accepted, oldest first

    def __post_init__(self):
        super().__post_init__()
        self._state = threading.Lock()
        self._holds: list[threading.Event] = []  # for the next creates' answers
        self._held: list[threading.Event] = []  # every hold given out, released at exit

    def __exit__(self, *exc):
        for event in self._held:
            event.set()
        super().__exit__(*exc)

    # --- the API ----------------------------------------------------------------------------

    @route("POST", MESSAGES)
    def create_message(self, request: FakeRequest, account: str):
        if refusal := self._unauthorized(request, account):
            return refusal
        form = request.form
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if sender != self.from_number:
            return _error(
                400,
                21606,
                f"The 'From' phone number provided ({sender}) is not a valid message-capable Twilio "
                "phone number for this destination/account.",
            )
        if not body:
            return _error(400, 21602, "Message body is required.")
        if to in self.invalid:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        now = datetime.now(UTC)
        sid = "SM" + secrets.token_hex(16)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": _rfc2822(now),
            "date_sent": None,
            "date_updated": _rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
            "status_callback": form.get("StatusCallback"),
        }
        answer = _public(message)
        with self._state:
            self.messages.append(message)
            message.update(status="sent", date_sent=_rfc2822(now))  # on its way at once
            hold = self._holds.pop(0) if self._holds else None
        if hold is not None:
            hold.wait(HOLD_LIMIT_SECONDS)  # the client gave up meanwhile: the answer is lost
        return 201, answer

    @route("GET", MESSAGES)
    def list_messages(self, request: FakeRequest, account: str):
        if refusal := self._unauthorized(request, account):
            return refusal
        query = {name: values[0] for name, values in request.query.items()}
        since = date.fromisoformat(query["DateSent>"][:10]) if "DateSent>" in query else None
        with self._state:
            found = [
                _public(m)
                for m in reversed(self.messages)
                if query.get("To", m["to"]) == m["to"]
                and query.get("From", m["from"]) == m["from"]
                and (
                    since is None
                    or (m["date_sent"] and parsedate_to_datetime(m["date_sent"]).date() >= since)
                )
            ]
        page_size = int(query.get("PageSize", 50))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json?PageSize={page_size}&Page=0"
        return 200, {
            "messages": found[:page_size],
            "end": max(min(len(found), page_size) - 1, 0),
            "first_page_uri": uri,
            "next_page_uri": None,  # one page is all a test needs
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    # --- helpers for tests ------------------------------------------------------------------

    def hold_after_next_create(self) -> threading.Event:
        """The next accepted message is made, and its answer waits until the Event is set (or
        HOLD_LIMIT_SECONDS): with a shorter client timeout, the answer is lost."""
        event = threading.Event()
        with self._state:
            self._holds.append(event)
            self._held.append(event)
        return event

    def backdate(self, sid: str, days: int) -> None:
        """The message was made and sent this many days earlier."""
        with self._state:
            message = next(m for m in self.messages if m["sid"] == sid)
            for key in ("date_created", "date_sent", "date_updated"):
                if message[key]:
                    message[key] = _rfc2822(parsedate_to_datetime(message[key]) - timedelta(days=days))

    def signed_status_callback(
        self, message: dict[str, Any], status: str, error_code: int | None = None, *, token: str | None = None
    ) -> tuple[str, dict[str, str], str]:
        """(url, form fields, X-Twilio-Signature) of Twilio's status callback for a message that
        reached `status`; the message takes that status. Signed with the auth token, or `token`."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": message["from"],
            "MessageSid": message["sid"],
            "MessageStatus": status,
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "To": message["to"],
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        with self._state:
            message.update(status=status, error_code=error_code, date_updated=_rfc2822(datetime.now(UTC)))
        url = message["status_callback"]
        signature = RequestValidator(token or self.auth_token).compute_signature(url, params)
        return url, params, signature

    def status_callback(
        self, message: dict[str, Any], status: str, error_code: int | None = None
    ) -> requests.Response:
        """POST Twilio's signed status callback to the message's StatusCallback URL (a live server)."""
        url, params, signature = self.signed_status_callback(message, status, error_code)
        return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)

    def _unauthorized(self, request: FakeRequest, account: str) -> tuple[int, dict[str, Any]] | None:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        header = request.headers.get("authorization", "")
        if not (hmac.compare_digest(header, f"Basic {expected}") and account == self.account_sid):
            return _error(401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect.")
        return None
