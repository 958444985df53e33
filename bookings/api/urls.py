"""The bookings API; endpoints arrive with the bookings issue."""

app_name = "bookings"
urlpatterns: list = []
