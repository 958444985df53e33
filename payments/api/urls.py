"""The payments API; endpoints arrive with the payments issue."""

app_name = "payments"
urlpatterns: list = []
