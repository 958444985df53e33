from django.urls import path

from payments.api.views import WebhookView

app_name = "payments"
urlpatterns = [
    path("webhook/<str:gateway>", WebhookView.as_view(), name="webhook"),
]
