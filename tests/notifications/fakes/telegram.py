"""A fake of Telegram's Bot API (sendMessage and the webhook's methods), and the updates its
users' clients cause.

It checks what Telegram checks: the bot's token in the address (/bot<token>/<method>; a wrong
one or an unknown method is a 404 "Not Found"), a chat_id and a text, the text's length, and
the HTML of parse_mode "HTML", loosely: supported tags only, balanced, no stray "<" (Telegram's
400 "Bad Request: can't parse entities: ..."). Errors have Telegram's shape:
{"ok": false, "error_code", "description"[, "parameters"]}.

Every chat exists and accepts messages until a test says otherwise: `block(chat_id)` (the
user blocked the bot: 403), `forget(chat_id)` (no such chat: 400), `deactivate(chat_id)`
(a deleted account: 403), `flood_next(retry_after)` (the next call gets a 429). Accepted
messages are kept per chat in `messages`. setWebhook refuses what Telegram refuses (an
address that is not HTTPS, a secret with other characters).

`message_update` and `kicked_update` build the updates Telegram posts to the webhook.
"""

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

MAX_TEXT = 4096
HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip
TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?>")
SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def _refused(error_code: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": error_code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return error_code, body


def _ok(result: Any, **extra: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result, **extra}


def html_problem(text: str) -> str:
    """Why Telegram would not parse `text` as HTML, or "" (loosely: tags and their nesting only)."""
    open_tags: list[str] = []
    position = 0
    while (start := text.find("<", position)) != -1:
        offset = len(text[:start].encode())
        match = TAG.match(text, start)
        if match is None:
            return f"Unsupported start tag at byte offset {offset}"
        closing, name = match.group(1), match.group(2).lower()
        if name not in HTML_TAGS:
            return f'Unsupported {"end" if closing else "start"} tag "{name}" at byte offset {offset}'
        if not closing:
            open_tags.append(name)
        elif not open_tags:
            return f'Unexpected end tag "{name}" at byte offset {offset}'
        elif (expected := open_tags.pop()) != name:
            return f'Unmatched end tag at byte offset {offset}, expected "</{expected}>", found "</{name}>"'
        position = match.end()
    if open_tags:
        return f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"'
    return ""


@dataclass
class FakeTelegram(FakeProvider):
    token: str = "7012345678:AAFakeTelegramBotToken-0123456789ab"
    username: str = "fulfil_test_bot"
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by chat id (str)
    webhook: dict[str, Any] = field(default_factory=dict)  # what setWebhook set; empty: none

    def __post_init__(self):
        super().__post_init__()
        self._state = threading.Lock()
        self._message_ids = itertools.count(101)
        self._update_ids = itertools.count(800_000_001)
        self._gone: dict[str, tuple[int, str]] = {}  # chat id -> the refusal its messages get
        self._floods: list[int] = []  # retry_after of the next 429s

    # --- the API ----------------------------------------------------------------------------

    @route("POST", r"^/bot(?P<token>[^/]*)/(?P<method>[A-Za-z]+)$")
    def call(self, request: FakeRequest, token: str, method: str):
        handler = {
            "sendmessage": self.send_message,
            "setwebhook": self.set_webhook,
            "deletewebhook": self.delete_webhook,
            "getwebhookinfo": self.webhook_info,
        }.get(method.lower())  # method names are case-insensitive at Telegram
        if token != self.token or handler is None:
            return _refused(404, "Not Found")
        with self._state:
            flood = self._floods.pop(0) if self._floods else None
        if flood is not None:
            return _refused(429, f"Too Many Requests: retry after {flood}", retry_after=flood)
        try:
            params = request.json if request.body else {}
        except ValueError:
            params = None
        if not isinstance(params, dict):
            return _refused(400, "Bad Request: invalid JSON")
        return handler(params)

    def send_message(self, params: dict[str, Any]):
        chat_id = str(params.get("chat_id") or "")
        text = params.get("text")
        if not chat_id:
            return _refused(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _refused(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _refused(400, "Bad Request: message is too long")
        parse_mode = params.get("parse_mode")
        if parse_mode not in (None, "", "HTML", "MarkdownV2", "Markdown"):
            return _refused(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
        if parse_mode == "HTML" and (problem := html_problem(text)):
            return _refused(400, f"Bad Request: can't parse entities: {problem}")
        with self._state:
            if chat_id in self._gone:
                return _refused(*self._gone[chat_id])
            message = {"message_id": next(self._message_ids), **params, "chat_id": chat_id}
            self.messages.setdefault(chat_id, []).append(message)
        chat = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id, "type": "private"}
        return _ok({"message_id": message["message_id"], "chat": chat, "text": text})

    def set_webhook(self, params: dict[str, Any]):
        url = str(params.get("url") or "")
        if not url:
            return self.delete_webhook(params)  # an empty url removes the webhook, as at Telegram
        if urlsplit(url).scheme != "https":
            return _refused(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not SECRET.match(str(secret)):
            return _refused(400, "Bad Request: secret token contains unallowed characters")
        with self._state:
            self.webhook = {
                "url": url,
                "secret_token": secret,
                "allowed_updates": params.get("allowed_updates"),
                "drop_pending_updates": bool(params.get("drop_pending_updates")),
            }
        return _ok(True, description="Webhook was set")

    def delete_webhook(self, params: dict[str, Any]):
        with self._state:
            had = bool(self.webhook)
            self.webhook = {}
        return _ok(True, description="Webhook was deleted" if had else "Webhook is already deleted")

    def webhook_info(self, params: dict[str, Any]):
        info: dict[str, Any] = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return _ok(info)

    # --- helpers for tests ------------------------------------------------------------------

    def block(self, chat_id: str | int) -> None:
        """The user blocked the bot: messages to the chat are refused with 403."""
        self._gone[str(chat_id)] = (403, "Forbidden: bot was blocked by the user")

    def deactivate(self, chat_id: str | int) -> None:
        """The user deleted their Telegram account."""
        self._gone[str(chat_id)] = (403, "Forbidden: user is deactivated")

    def forget(self, chat_id: str | int) -> None:
        """No such chat (a wrong id, or one the bot never talked with)."""
        self._gone[str(chat_id)] = (400, "Bad Request: chat not found")

    def flood_next(self, retry_after: int = 7) -> None:
        """The next call is refused with 429 and this retry_after, as Telegram's flood control does."""
        with self._state:
            self._floods.append(retry_after)

    def message_update(
        self, chat_id: int, text: str, *, language_code: str = "en", chat_type: str = "private"
    ) -> dict[str, Any]:
        """The update a user's message to the bot makes (a deep link's "/start <payload>" too)."""
        user = {"id": chat_id, "is_bot": False, "first_name": "Ada", "language_code": language_code}
        return {
            "update_id": next(self._update_ids),
            "message": {
                "message_id": next(self._message_ids),
                "from": user,
                "chat": {"id": chat_id, "first_name": "Ada", "type": chat_type},
                "date": 1_700_000_000,
                "text": text,
                **(
                    {"entities": [{"offset": 0, "length": 6, "type": "bot_command"}]}
                    if text.startswith("/")
                    else {}
                ),
            },
        }

    def kicked_update(self, chat_id: int) -> dict[str, Any]:
        """The update Telegram sends when a user blocks the bot."""
        user = {"id": chat_id, "is_bot": False, "first_name": "Ada"}
        bot = {"id": int(self.token.split(":")[0]), "is_bot": True, "username": self.username}
        return {
            "update_id": next(self._update_ids),
            "my_chat_member": {
                "chat": {"id": chat_id, "first_name": "Ada", "type": "private"},
                "from": user,
                "date": 1_700_000_000,
                "old_chat_member": {"user": bot, "status": "member"},
                "new_chat_member": {"user": bot, "status": "kicked", "until_date": 0},
            },
        }
