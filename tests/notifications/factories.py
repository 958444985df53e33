"""A message of the delivery log, as the subscriber writes it (sent in-app by default)."""

import uuid

import factory

from notifications.models import Notification
from tests.factories import UserFactory


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    event_id = factory.LazyFunction(uuid.uuid4)
    event_type = "order.paid"
    rule = factory.SelfAttribute("event_type")
    channel = "inapp"
    user = factory.SubFactory(UserFactory)
    recipient = factory.LazyAttribute(lambda n: f"user:{n.user.pk}")
    address = factory.LazyAttribute(lambda n: str(n.user.pk))
    language = "en"
    subject = "Your order is paid"
    body = "Thank you."
    status = Notification.Status.DELIVERED
