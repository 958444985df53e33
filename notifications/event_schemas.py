"""The data of the events notifications publishes (notification.*), as it travels.

Registered from NotificationsConfig.ready(); built by notifications.delivery.event_data.
"""

from uuid import UUID

from pydantic import Field

from core.events.schemas import EventData


class NotificationData(EventData):
    notification_id: str
    event_id: UUID = Field(description="The event it told about (a new id for a message sent by staff)")
    event_type: str
    rule: str = Field(description='A rule\'s key, or "manual" for one sent by staff')
    channel: str = Field(description="email, sms, telegram, inapp...")
    audience: str = Field(description="customer or staff")
    user_id: int | None = Field(description="The user it was for; null for the staff chat")
    attempts: int


class NotificationSent(NotificationData):
    provider_id: str = Field(description="The provider's message id (may be empty)")


class NotificationFailed(NotificationData):
    error: str = Field(max_length=1000)


SCHEMAS: dict[str, type[EventData]] = {
    "notification.sent": NotificationSent,
    "notification.failed": NotificationFailed,
}
