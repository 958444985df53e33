"""Registration and API tokens for storefront clients, and the shared error shape."""

import pytest
from rest_framework.throttling import ScopedRateThrottle

from accounts.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


def register(api_client, **overrides):
    payload = {"email": "Ada@Example.com", "password": PASSWORD, "phone": "+2348012345678"} | overrides
    return api_client.post("/api/auth/register", payload, format="json")


def test_register_creates_a_customer_and_returns_a_token(api_client):
    response = register(api_client, preferred_language="ru")

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["preferred_language"] == "ru"
    assert body["is_staff"] is False
    user = User.objects.get(email="ada@example.com")
    assert user.check_password(PASSWORD)
    me = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert me.status_code == 200
    assert me.json()["id"] == user.id


def test_register_twice_with_one_email_is_refused(api_client):
    register(api_client)
    response = register(api_client, email="ADA@example.com")

    assert response.status_code == 422
    assert response.json()["code"] == "email_taken"
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [("password", "123", "password"), ("email", "not-an-email", "email"), ("phone", "0801", "phone")],
)
def test_register_with_bad_input_names_the_field(api_client, field, value, fragment):
    response = register(api_client, **{field: value})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert fragment in body["message"] or fragment in body["extra"].get("fields", {})
    assert set(body) == {"code", "message", "extra"}
    assert not User.objects.exists()


def test_token_is_issued_for_the_right_password_only(api_client):
    register(api_client)

    wrong = api_client.post(
        "/api/auth/token", {"email": "ada@example.com", "password": "nope"}, format="json"
    )
    right = api_client.post(
        "/api/auth/token", {"email": "ADA@example.com", "password": PASSWORD}, format="json"
    )

    assert wrong.status_code == 400
    assert wrong.json()["code"] == "invalid_credentials"
    assert right.status_code == 200
    assert len(right.json()["token"]) == 40


def test_revoked_token_no_longer_authenticates(api_client):
    token = register(api_client).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api_client.delete("/api/auth/token").status_code == 204

    response = api_client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_anonymous_caller_gets_401_in_the_error_shape(api_client):
    response = api_client.get("/api/auth/me")

    assert response.status_code == 401
    assert response.json() == {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "extra": {},
    }


def test_customer_updates_own_profile_but_not_staff_flag(api_client):
    token = register(api_client).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = api_client.patch("/api/auth/me", {"sms_opt_out": True, "is_staff": True}, format="json")

    assert response.status_code == 200
    user = User.objects.get()
    assert user.sms_opt_out is True
    assert user.is_staff is False


def test_login_attempts_are_throttled_through_redis(api_client, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"})
    payload = {"email": "ada@example.com", "password": "wrong"}

    codes = [api_client.post("/api/auth/token", payload, format="json").status_code for _ in range(4)]

    assert codes == [400, 400, 400, 429]
    throttled = api_client.post("/api/auth/token", payload, format="json").json()
    assert throttled["code"] == "throttled"
    assert throttled["extra"]["wait"] > 0
    assert any(key.startswith("throttle_auth_") for key in _redis_keys(cache))
    cache.clear()


def _redis_keys(cache) -> list[str]:
    return [key.decode().split(":", 2)[-1] for key in cache.client.get_client().keys("*")]
