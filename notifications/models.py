"""Notifications: rules (event -> message), staff's template overrides, customers' preferences,
Telegram links, and the delivery log (`Notification`, one row per message).

A `Notification` is written when its event is handled (rendered, with the address of that
moment) and is unique per (event, rule, channel, recipient) in the database, so a
redelivered event sends nothing twice. It is sent by notifications.delivery: reserved in one
transaction (`sending`, with a lease), sent outside any transaction, and recorded in another
(`sent`, `failed`, or `queued` again for a retry). A sweep takes what a crash left behind.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from timezone_field import TimeZoneField

from core.ids import public_id

CHANNELS = [("email", "E-mail"), ("sms", "SMS"), ("telegram", "Telegram"), ("inapp", "In-app")]
CHANNEL_NAMES = tuple(name for name, _ in CHANNELS)


class Audience(models.TextChoices):
    CUSTOMER = "customer"
    STAFF = "staff"


class Category(models.TextChoices):
    TRANSACTIONAL = "transactional"
    REMINDERS = "reminders"
    MARKETING = "marketing"


def notification_public_id() -> str:
    return public_id("ntf")


def default_channels() -> dict[str, list[str]]:
    """Every channel for transactional messages and reminders; e-mail and in-app for marketing."""
    return {
        Category.TRANSACTIONAL: list(CHANNEL_NAMES),
        Category.REMINDERS: list(CHANNEL_NAMES),
        Category.MARKETING: ["email", "inapp"],
    }


class Rule(models.Model):
    """Staff's settings of one rule of notifications.rules (enabled, channels, template).

    What a rule listens to, its audience, category and whether it is critical are in code
    (notifications.rules.RULES); a row per rule is created after `migrate` with the code's
    defaults and never overwritten afterwards.
    """

    key = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    channels = models.JSONField(default=list, help_text='Some of "email", "sms", "telegram", "inapp".')
    template = models.CharField(
        max_length=100,
        help_text="The template's name: notifications/messages/<language>/<template>.html, "
        "or a template written in the admin under that name.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class MessageTemplate(models.Model):
    """A template written by staff in the admin; it replaces the file of the same name and language.

    One Django template per name and language with a block per part: `subject`, `text`,
    `html` (e-mail), `sms`, `telegram`, `inapp`.
    """

    name = models.CharField(max_length=100)
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    source = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "language"]
        constraints = [
            models.UniqueConstraint(fields=["name", "language"], name="notification_template_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"


class Preference(models.Model):
    """A customer's choices: channels per category, quiet hours (their timezone), Telegram chat."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="notification_preference",
    )
    channels = models.JSONField(default=default_channels)
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    timezone = TimeZoneField(default=settings.TIME_ZONE)
    telegram_chat_id = models.CharField(max_length=32, blank=True)
    telegram_linked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of {self.user}"


def link_token_new() -> str:
    return secrets.token_urlsafe(24)  # 32 characters of A-Za-z0-9_-: a Telegram start payload


def link_token_expiry():
    return timezone.now() + timedelta(minutes=settings.TELEGRAM_LINK_MINUTES)


class TelegramLinkToken(models.Model):
    """A one-time token in a deep link https://t.me/<bot>?start=<token>; the bot's webhook binds the chat."""

    token = models.CharField(max_length=64, unique=True, default=link_token_new)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=link_token_expiry)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Telegram link of {self.user_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class Notification(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"  # reserved by a sender until lease_until
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        UNDELIVERED = "undelivered"

    public_id = models.CharField(max_length=32, unique=True, default=notification_public_id, editable=False)
    event_id = models.UUIDField(help_text="The event it tells about (a new id for a message sent by staff).")
    event_type = models.CharField(max_length=100)
    rule = models.CharField(max_length=100, help_text='A rule\'s key, or "manual" for one sent by staff.')
    channel = models.CharField(max_length=16, choices=CHANNELS)
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.TRANSACTIONAL)
    critical = models.BooleanField(default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
        help_text="The customer or staff member it is for (none: the staff chat).",
    )
    recipient = models.CharField(max_length=64, help_text='"user:<id>", or "staff-chat".')
    address = models.CharField(max_length=320, help_text="E-mail, phone, chat id: as it was at queueing.")
    language = models.CharField(max_length=8)
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    provider_id = models.CharField(max_length=100, blank=True, help_text="The provider's message id.")
    last_error = models.TextField(blank=True)
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="Not sent before this (quiet hours, or the next retry)."
    )
    lease_until = models.DateTimeField(null=True, blank=True, help_text="While sending: reserved until.")
    resend_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resends"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # Once per (event, rule, channel, recipient): a redelivered event sends nothing twice.
            # Staff's resends are rows of their own (resend_of set).
            models.UniqueConstraint(
                fields=["event_id", "rule", "channel", "recipient"],
                condition=Q(resend_of__isnull=True),
                name="notification_once_per_event",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="notification_status_idx"),
            models.Index(fields=["user", "channel", "-created_at"], name="notification_inbox_idx"),
            models.Index(fields=["channel", "provider_id"], name="notification_provider_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.rule} {self.channel} -> {self.recipient}"
