"""In-app: the customer's inbox is the delivery log itself; nothing leaves the database."""

from notifications.channels.base import Channel


class InAppChannel(Channel):
    name = "inapp"
    external = False

    def address(self, user, preference=None) -> str:
        return str(user.pk) if user.is_active else ""

    def send(self, notification) -> str:
        return notification.public_id
