"""Telegram: messages from the bot to a customer's linked chat, or to the staff's group chat.

The bot's token is part of every Bot API address (/bot<token>/method), so no error or log
line here ever shows an address or a requests exception as it is: its text is redacted and
it is not chained (a traceback of the delivery log would show the cause's text).
"""

import logging
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from notifications.channels.base import Channel, PermanentFailure, TemporaryFailure
from notifications.models import Notification, Preference

logger = logging.getLogger(__name__)


class TelegramError(Exception):
    """The Bot API refused a call (`error_code` as Telegram gives it) or could not be reached
    (`error_code` None: a timeout, a connection error, an answer that is not Telegram's JSON)."""

    def __init__(
        self,
        method: str,
        error_code: int | None,
        description: str,
        *,
        parameters: dict[str, Any] | None = None,
    ):
        self.method = method
        self.error_code = error_code
        self.description = description
        self.parameters = parameters or {}
        code = f"error_code {error_code}" if error_code is not None else "unreachable"
        super().__init__(f"Telegram {method}: {code}: {description}")

    @property
    def retry_after(self) -> float | None:
        value = self.parameters.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


def redact(text: str) -> str:
    """`text` without the bot's token (requests' exceptions quote the address they called)."""
    token = settings.TELEGRAM_BOT_TOKEN
    return text.replace(token, "<token>") if token else text


def bot_api_call(method: str, payload: dict[str, Any] | None = None) -> Any:
    """One Bot API call: its `result`, or TelegramError (whose text never holds the token)."""
    url = f"{settings.TELEGRAM_API_URL.rstrip('/')}/bot{settings.TELEGRAM_BOT_TOKEN}/{method}"
    try:
        response = requests.post(url, json=payload or {}, timeout=settings.TELEGRAM_TIMEOUT_SECONDS)
    except requests.Timeout:
        raise TelegramError(method, None, "timed out") from None
    except requests.RequestException as exc:
        raise TelegramError(method, None, f"{type(exc).__name__}: {redact(str(exc))}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "ok" not in body:
        # Not the Bot API's answer (a proxy's error page, a truncated body): its status says why.
        code = response.status_code if response.status_code >= 400 else None
        raise TelegramError(method, code, f"HTTP {response.status_code}, not the Bot API's JSON")
    if not body["ok"]:
        parameters = body.get("parameters")
        raise TelegramError(
            method,
            int(body.get("error_code") or response.status_code),
            redact(str(body.get("description") or "no description")),
            parameters=parameters if isinstance(parameters, dict) else None,
        )
    return body.get("result")


def telegram_chat_unlink(chat_id: str) -> int:
    """Unlink a chat from every account it is linked to; how many were."""
    return Preference.objects.filter(telegram_chat_id=str(chat_id)).update(
        telegram_chat_id="", telegram_linked_at=None, updated_at=timezone.now()
    )


def chat_is_gone(error: TelegramError) -> bool:
    """The chat can never receive the bot's messages again: blocked, deleted, deactivated, kicked."""
    return error.error_code == 403 or (error.error_code == 400 and "chat not found" in error.description)


class TelegramChannel(Channel):
    name = "telegram"

    def configured(self) -> bool:
        return bool(settings.TELEGRAM_BOT_TOKEN)

    def address(self, user, preference=None) -> str:
        if preference is not None:
            return preference.telegram_chat_id
        chat_id = (
            Preference.objects.filter(user_id=user.pk).values_list("telegram_chat_id", flat=True).first()
        )
        return chat_id or ""

    def staff_address(self) -> str:
        return settings.TELEGRAM_STAFF_CHAT_ID

    def send(self, notification: Notification) -> str:
        chat_id = notification.address
        if not chat_id:
            raise PermanentFailure("no Telegram chat to send to")
        payload = {
            "chat_id": chat_id,
            "text": notification.body,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        try:
            result = bot_api_call("sendMessage", payload)
        except TelegramError as error:
            raise self._failure(error, chat_id) from None
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if message_id is None:
            # It may well have gone: sending it again risks a duplicate, but not sending risks
            # a lost message, and the answer says nothing either way.
            raise TemporaryFailure("Telegram sendMessage: ok without a message_id")
        return str(message_id)

    def _failure(self, error: TelegramError, chat_id: str) -> Exception:
        """The delivery log's failure for a refused or failed sendMessage; a gone chat is unlinked."""
        code = error.error_code
        if code is None or code >= 500:
            return TemporaryFailure(str(error))
        if code == 429:
            return TemporaryFailure(str(error), retry_after=error.retry_after)
        if chat_is_gone(error):
            unlinked = telegram_chat_unlink(chat_id)
            logger.info(
                "telegram chat unusable, unlinked",
                extra={
                    "chat_id": chat_id,
                    "error_code": code,
                    "description": error.description,
                    "unlinked": unlinked,
                },
            )
            return PermanentFailure(f"{error}; the chat was unlinked")
        if migrated := error.parameters.get("migrate_to_chat_id"):
            return PermanentFailure(f"{error}; the group is now the supergroup {migrated}")
        return PermanentFailure(str(error))
