"""The orders API; endpoints arrive with the orders issue."""

app_name = "orders"
urlpatterns: list = []
