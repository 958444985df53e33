from django.urls import path

from core.events.api import EventListView

app_name = "integrations"
urlpatterns = [
    path("events", EventListView.as_view(), name="events"),
]
