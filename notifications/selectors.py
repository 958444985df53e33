"""What the notifications API reads: a customer their own messages, staff everyone's."""

from django.db.models import QuerySet

from notifications.models import Notification


def notifications_visible_to(user) -> QuerySet[Notification]:
    messages = Notification.objects.select_related("user")
    return messages if user.is_staff else messages.filter(user=user)
