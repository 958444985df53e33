from django.urls import path

from accounts.api.views import MeView, RegisterView, TokenView

app_name = "accounts"
urlpatterns = [
    path("register", RegisterView.as_view(), name="register"),
    path("token", TokenView.as_view(), name="token"),
    path("me", MeView.as_view(), name="me"),
]
