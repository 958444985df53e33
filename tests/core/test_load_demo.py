"""`manage.py load_demo` (make run): demo users and every app's demo data, twice without harm."""

import io

import pytest
from django.core.management import call_command

from accounts.models import User
from bookings.models import Resource
from orders.models import Product
from subscriptions.models import Child, Plan

pytestmark = pytest.mark.django_db


def test_load_demo_is_idempotent(monkeypatch):
    monkeypatch.setenv("DEMO_STAFF_PASSWORD", "demo-password-1")
    out = io.StringIO()
    call_command("load_demo", "--force", stdout=out)
    call_command("load_demo", "--force", stdout=out)

    assert User.objects.get(email="admin@example.com").is_superuser
    assert Product.objects.filter(category__slug__in=["toys", "books"]).count() == 3
    assert Product.objects.get(slug="beech-train").variants.count() == 2
    assert (
        Product.objects.filter(category__slug="toybox-toys", variants__age_min_months__isnull=False).count()
        == 12
    )
    assert Plan.objects.count() == 3
    assert sorted(
        Child.objects.filter(customer__email="customer@example.com").values_list("name", flat=True)
    ) == [
        "Leo",
        "Mia",
    ]
    assert Resource.objects.count() == 2
    assert Resource.objects.get(slug="studio-a").opening_hours.count() == 7
    assert Resource.objects.get(slug="anna").services.get().duration_minutes == 45
