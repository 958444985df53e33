"""factory_boy factories shared by the tests."""

import factory
from django.contrib.auth.hashers import make_password

from accounts.models import User

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1555010{n:04d}")
    password = factory.LazyFunction(lambda: make_password(PASSWORD))


class StaffFactory(UserFactory):
    email = factory.Sequence(lambda n: f"staff{n}@example.com")
    is_staff = True


class SuperuserFactory(StaffFactory):
    email = factory.Sequence(lambda n: f"admin{n}@example.com")
    is_superuser = True
