"""The bookings API, under /api/ (config/urls.py), so that the collection is /api/bookings."""

from django.urls import path

from bookings.api import views

app_name = "bookings"
urlpatterns = [
    path("bookings", views.BookingListCreateView.as_view(), name="list"),
    path("bookings/resources", views.ResourceListView.as_view(), name="resources"),
    path("bookings/availability", views.AvailabilityView.as_view(), name="availability"),
    path("bookings/<str:booking_id>", views.BookingDetailView.as_view(), name="detail"),
    path("bookings/<str:booking_id>/confirm", views.BookingConfirmView.as_view(), name="confirm"),
    path("bookings/<str:booking_id>/complete", views.BookingCompleteView.as_view(), name="complete"),
    path("bookings/<str:booking_id>/no-show", views.BookingNoShowView.as_view(), name="no-show"),
]
