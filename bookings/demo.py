"""Demo resources for `manage.py load_demo` (make run): a studio hall and a staff member."""

from datetime import time
from decimal import Decimal

from django.db import transaction

from bookings.models import OpeningHours, Resource, Service


def load(*, stdout) -> None:
    with transaction.atomic():
        hall, new_hall = Resource.objects.get_or_create(
            slug="studio-a",
            defaults={
                "kind": Resource.Kind.HALL,
                "name": "Studio A",
                "description": "Daylight photo studio, 60 m2.",
                "timezone": "Europe/Berlin",
                "currency": "EUR",
                "price_per_hour": Decimal("40.00"),
            },
        )
        stylist, new_stylist = Resource.objects.get_or_create(
            slug="anna",
            defaults={
                "kind": Resource.Kind.STAFF,
                "name": "Anna (hair stylist)",
                "timezone": "Europe/Berlin",
                "currency": "EUR",
                "min_booking_minutes": 30,
                "max_booking_minutes": 120,
            },
        )
        if new_hall:
            OpeningHours.objects.bulk_create(
                OpeningHours(resource=hall, weekday=day, opens=time(9), closes=time(21)) for day in range(7)
            )
        if new_stylist:
            OpeningHours.objects.bulk_create(
                OpeningHours(resource=stylist, weekday=day, opens=time(10), closes=time(18))
                for day in range(5)
            )
            haircut = Service.objects.create(
                name="Haircut", duration_minutes=45, price=Decimal("35.00"), currency="EUR"
            )
            haircut.resources.add(stylist)
    stdout.write(
        f"demo bookings:      {hall.name} (hall_id={hall.pk}), {stylist.name} (GET /api/bookings/resources)"
    )
