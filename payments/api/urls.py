from django.urls import path

from payments.api import views

app_name = "payments"
urlpatterns = [
    path("payments", views.PaymentListCreateView.as_view(), name="list"),
    path("payments/batch", views.BatchPaymentView.as_view(), name="batch"),
    path("payments/webhook/<str:gateway>", views.WebhookView.as_view(), name="webhook"),
    path("payments/<str:payment_id>", views.PaymentDetailView.as_view(), name="detail"),
    path("payments/<str:payment_id>/process", views.PaymentProcessView.as_view(), name="process"),
    path("payments/<str:payment_id>/refund", views.PaymentRefundView.as_view(), name="refund"),
    path("payment-methods", views.SavedMethodListView.as_view(), name="methods"),
    path("payment-methods/<str:method_id>", views.SavedMethodDetailView.as_view(), name="method"),
]
