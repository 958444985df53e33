import pytest

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_users_log_in_by_lowercased_email():
    user = User.objects.create_user(email="Bob@Example.COM", password="pw-123456789")

    assert user.email == "bob@example.com"
    assert User.USERNAME_FIELD == "email"
    assert not user.is_staff


def test_superuser_is_staff():
    admin = User.objects.create_superuser(email="root@example.com", password="pw-123456789")

    assert admin.is_staff and admin.is_superuser


def test_a_user_needs_an_email():
    with pytest.raises(ValueError, match="e-mail"):
        User.objects.create_user(email="", password="x")
