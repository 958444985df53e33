"""The notifications API; endpoints arrive with the notifications issue."""

app_name = "notifications"
urlpatterns: list = []
