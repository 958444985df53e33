"""Linking a Telegram chat to an account, and the bot's updates.

The customer asks for a deep link (`telegram_link_start`): https://t.me/<bot>?start=<token>,
with a one-time token that expires. Opening it sends the bot "/start <token>" from their
chat; the webhook hands the update to `telegram_update_handle`, which binds that chat to the
token's user and answers in the webhook's response (no outbound call). A chat belongs to
one account at most: binding it elsewhere unlinks it from where it was. A chat that blocks
the bot is unlinked when Telegram tells us (`my_chat_member`, status "kicked"), or when a
message to it is refused (notifications.channels.telegram).
"""

import logging
import re
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications.channels.telegram import telegram_chat_unlink
from notifications.models import Preference, TelegramLinkToken
from notifications.services import preference_default

logger = logging.getLogger(__name__)

START_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what Telegram lets a deep link carry
GONE_STATUSES = ("kicked", "left")  # the bot was blocked, or removed from a group

REPLIES = {
    "linked": {
        "en": "Your account is linked: notifications will arrive in this chat.",
        "ru": "Аккаунт привязан: уведомления будут приходить в этот чат.",
    },
    "invalid": {
        "en": "This link is no longer valid. Please request a new one in your account settings.",
        "ru": "Эта ссылка больше не действует. Получите новую в настройках аккаунта.",
    },
    "help": {
        "en": "To receive notifications here, open the Telegram link from your account settings.",
        "ru": "Чтобы получать уведомления здесь, откройте ссылку на Telegram в настройках аккаунта.",
    },
}


class TelegramNotConfigured(Exception):
    """The bot's token or username is not set: no deep link can be given."""


def telegram_link_start(user) -> tuple[str, datetime]:
    """A new one-time deep link for `user` and when it expires; their spent tokens are dropped."""
    if not settings.TELEGRAM_BOT_TOKEN or not settings.TELEGRAM_BOT_USERNAME:
        raise TelegramNotConfigured("Telegram is not configured (TELEGRAM_BOT_TOKEN, TELEGRAM_BOT_USERNAME).")
    TelegramLinkToken.objects.filter(
        Q(used_at__isnull=False) | Q(expires_at__lte=timezone.now()), user=user
    ).delete()
    token = TelegramLinkToken.objects.create(user=user)
    username = settings.TELEGRAM_BOT_USERNAME.removeprefix("@")
    return f"https://t.me/{username}?start={token.token}", token.expires_at


def telegram_update_handle(update: dict[str, Any]) -> dict[str, Any] | None:
    """Act on one update from the bot's webhook; the webhook's reply (a sendMessage), or None.

    Whatever an update holds, it never raises for its shape: an error answers the webhook
    with a 5xx, and Telegram would send the same update again and again.
    """
    message = update.get("message")
    if isinstance(message, dict):
        return _message_handle(message)
    member = update.get("my_chat_member")
    if isinstance(member, dict):
        chat_id = _chat_id(member.get("chat"))
        new = member.get("new_chat_member")
        status = new.get("status") if isinstance(new, dict) else None
        if chat_id and status in GONE_STATUSES:
            unlinked = telegram_chat_unlink(chat_id)
            logger.info("telegram chat left the bot", extra={"chat_id": chat_id, "unlinked": unlinked})
    return None


def _chat_id(chat: Any) -> str:
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    return str(chat_id) if isinstance(chat_id, int | str) and not isinstance(chat_id, bool) else ""


def _message_handle(message: dict[str, Any]) -> dict[str, Any] | None:
    chat = message.get("chat")
    chat_id = _chat_id(chat)
    text = message.get("text")
    # Only a private chat is linked: a group would show one customer's messages to everyone in it.
    if not chat_id or chat.get("type") != "private" or not isinstance(text, str):
        return None
    command, _, payload = text.strip().partition(" ")
    if command.split("@", 1)[0] != "/start":
        return None
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    language = _language(sender.get("language_code"))
    payload = payload.strip()
    if not payload:
        return _reply(chat, "help", language)
    user = _link(payload, chat_id) if START_PAYLOAD.match(payload) else None
    if user is None:
        return _reply(chat, "invalid", language)
    return _reply(chat, "linked", _language(user.preferred_language))


def _link(token: str, chat_id: str):
    """Bind the chat to the token's user and spend the token; the user, or None if it is not valid."""
    now = timezone.now()
    with transaction.atomic():
        link = (
            TelegramLinkToken.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(token=token)
            .first()
        )
        if link is None or link.used_at is not None or link.expires_at <= now:
            return None
        Preference.objects.filter(telegram_chat_id=chat_id).exclude(user=link.user).update(
            telegram_chat_id="", telegram_linked_at=None, updated_at=now
        )
        preference = Preference.objects.select_for_update().filter(user=link.user).first()
        preference = preference or preference_default(link.user)
        preference.telegram_chat_id = chat_id
        preference.telegram_linked_at = now
        preference.save()
        link.used_at = now
        link.save(update_fields=["used_at"])
    logger.info("telegram chat linked", extra={"user_id": link.user.pk, "chat_id": chat_id})
    return link.user


def _language(code: Any) -> str:
    return "ru" if isinstance(code, str) and code.lower().startswith("ru") else "en"


def _reply(chat: dict[str, Any], key: str, language: str) -> dict[str, Any]:
    return {"method": "sendMessage", "chat_id": chat["id"], "text": REPLIES[key][language]}
