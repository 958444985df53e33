from django.urls import path

from notifications.api import views
from notifications.webhooks.telegram import TelegramWebhookView
from notifications.webhooks.twilio import TwilioStatusView

app_name = "notifications"
urlpatterns = [
    path("notifications", views.NotificationListView.as_view(), name="list"),
    path("notifications/preferences", views.PreferenceView.as_view(), name="preferences"),
    path("notifications/send", views.SendView.as_view(), name="send"),
    path("notifications/telegram/link", views.TelegramLinkView.as_view(), name="telegram-link"),
    path("notifications/webhooks/twilio", TwilioStatusView.as_view(), name="twilio-status"),
    path("notifications/webhooks/telegram", TelegramWebhookView.as_view(), name="telegram-webhook"),
    path("notifications/<str:notification_id>", views.NotificationDetailView.as_view(), name="detail"),
    path("notifications/<str:notification_id>/read", views.NotificationReadView.as_view(), name="read"),
]
