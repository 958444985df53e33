"""`manage.py telegram_webhook set|delete|info`: point the bot's updates at this site, or not."""

import json
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from notifications.channels.telegram import TelegramError, bot_api_call

ALLOWED_UPDATES = ["message", "my_chat_member"]  # "/start <token>", and a chat blocking the bot
SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as secret_token


class Command(BaseCommand):
    help = "Set, delete or show the Telegram bot's webhook (SITE_URL + the webhook's path)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        set_ = sub.add_parser("set", help="send the bot's updates to this site, with TELEGRAM_WEBHOOK_SECRET")
        delete = sub.add_parser("delete", help="stop sending the bot's updates anywhere")
        for action in (set_, delete):
            action.add_argument(
                "--drop-pending-updates", action="store_true", help="discard the updates Telegram holds"
            )
        sub.add_parser("info", help="show what Telegram has: the address, pending updates, the last error")

    def handle(self, *args, action: str, drop_pending_updates: bool = False, **options):
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set.")
        if action == "set":
            self.handle_set(drop_pending_updates)
        elif action == "delete":
            self.call("deleteWebhook", {"drop_pending_updates": drop_pending_updates})
            self.stdout.write("webhook deleted")
        else:
            self.stdout.write(json.dumps(self.call("getWebhookInfo"), indent=2, ensure_ascii=False))

    def handle_set(self, drop_pending_updates: bool) -> None:
        secret = settings.TELEGRAM_WEBHOOK_SECRET
        if not secret:
            raise CommandError("TELEGRAM_WEBHOOK_SECRET is not set: the webhook would refuse every update.")
        if not SECRET.match(secret):
            raise CommandError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -.")
        if not settings.SITE_URL:
            raise CommandError("SITE_URL is not set: Telegram needs the site's public HTTPS address.")
        url = settings.SITE_URL.rstrip("/") + reverse("notifications:telegram-webhook")
        self.call(
            "setWebhook",
            {
                "url": url,
                "secret_token": secret,
                "allowed_updates": ALLOWED_UPDATES,
                "drop_pending_updates": drop_pending_updates,
            },
        )
        self.stdout.write(f"webhook set: {url} ({', '.join(ALLOWED_UPDATES)})")

    def call(self, method: str, payload: dict | None = None):
        try:
            return bot_api_call(method, payload)
        except TelegramError as error:
            raise CommandError(str(error)) from None
