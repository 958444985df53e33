"""The subscriptions API, under /api/ (config/urls.py)."""

from django.urls import path

from subscriptions.api import views

app_name = "subscriptions"
urlpatterns = [
    path("children", views.ChildListCreateView.as_view(), name="children"),
    path("children/<int:child_id>", views.ChildDetailView.as_view(), name="child"),
    path("plans", views.PlanListView.as_view(), name="plans"),
    path("subscriptions", views.SubscriptionListCreateView.as_view(), name="list"),
    path("subscriptions/<str:subscription_id>", views.SubscriptionDetailView.as_view(), name="detail"),
    path("subscriptions/<str:subscription_id>/cancel", views.SubscriptionCancelView.as_view(), name="cancel"),
    path("subscriptions/<str:subscription_id>/pause", views.SubscriptionPauseView.as_view(), name="pause"),
    path("subscriptions/<str:subscription_id>/resume", views.SubscriptionResumeView.as_view(), name="resume"),
    path("subscriptions/<str:subscription_id>/skip", views.SubscriptionSkipView.as_view(), name="skip"),
    path("invoices", views.InvoiceListView.as_view(), name="invoices"),
    path("toyboxes", views.ToyboxListView.as_view(), name="toyboxes"),
    path("toyboxes/<str:toybox_id>", views.ToyboxDetailView.as_view(), name="toybox"),
]
