"""The channels a message can go by, by name (notifications.models.CHANNELS)."""

from notifications.channels.base import Channel
from notifications.channels.email import EmailChannel
from notifications.channels.inapp import InAppChannel
from notifications.channels.sms import SmsChannel
from notifications.channels.telegram import TelegramChannel

CHANNELS: dict[str, Channel] = {
    channel.name: channel for channel in (EmailChannel(), SmsChannel(), TelegramChannel(), InAppChannel())
}
