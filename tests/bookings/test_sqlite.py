"""The embedded default (SQLite) migrates, refuses overlaps by the service's check, and unmigrates."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from bookings import services
from bookings.models import OpeningHours, Resource
customer = User.objects.create_user(email="sqlite@example.com")
hall = Resource.objects.create(name="A", slug="a", timezone="UTC", currency="EUR", price_per_hour="10.00")
for day in range(7):
    OpeningHours.objects.create(resource=hall, weekday=day, opens="00:00", closes="00:00")
start = (timezone.now() + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
booking = services.booking_hold(customer_id=customer.pk, resource_id=hall.pk, starts_at=start,
                                 ends_at=start + timedelta(hours=2))
print("held", booking.status, booking.payment.amount)
try:
    services.booking_hold(customer_id=customer.pk, resource_id=hall.pk, starts_at=start + timedelta(hours=1),
                          ends_at=start + timedelta(hours=3))
    print("overlap accepted")
except services.SlotTaken:
    print("slot_taken")
from bookings.selectors import availability_for
day = availability_for(resource=hall, start_date=start.date(), end_date=start.date()).days[0]
print("free", [(i.start.hour, i.end.hour) for i in day.free])
"""


def run(tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DJANGO_READ_DOT_ENV": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "",
        "CELERY_FILESYSTEM_BROKER_DIR": str(tmp_path / "broker"),
        "REDIS_URL": "",
    }
    result = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, input=stdin, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.timeout(300)
def test_bookings_on_sqlite(tmp_path):
    run(tmp_path, "migrate", "--noinput")
    out = run(tmp_path, "shell", stdin=SCRIPT)
    assert "held pending_payment 6" in out and "slot_taken" in out and "overlap accepted" not in out
    assert "free [(0, 10), (12, 0)]" in out  # availability on SQLite: 10:00-12:00 is held
    run(tmp_path, "migrate", "bookings", "zero", "--noinput")
    run(tmp_path, "migrate", "bookings", "--noinput")
