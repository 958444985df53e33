"""Many requests for one slot at once, against PostgreSQL: exactly one booking holds it."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from bookings.models import Booking
from payments.models import Payment
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 100


def free_connections() -> int:
    """Connections PostgreSQL can still give (other test runs may share the server)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity")
        return cursor.fetchone()[0]


def test_100_concurrent_requests_for_one_slot_make_exactly_one_booking():
    """100 customers post the same slot at once, each through the API with its own connection.

    All 100 threads wait at a barrier and are released together. If the server has fewer
    free connections than that (it is shared), the requests in flight at once are capped
    below the free connections; the answer must be the same: one 201, the rest 409.
    """
    hall = ResourceFactory()
    customers = [UserFactory() for _ in range(REQUESTS)]
    start = local(3, 10)
    body = {"hall_id": hall.pk, "start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()}
    in_flight = min(REQUESTS, free_connections() - 10)
    assert in_flight >= 20, "too few free PostgreSQL connections to race"
    gate = threading.Semaphore(in_flight)
    barrier = threading.Barrier(REQUESTS, timeout=60)

    def attempt(customer) -> tuple[int, str]:
        client = APIClient()
        client.force_authenticate(customer)
        try:
            barrier.wait()
            with gate:
                response = client.post(
                    "/api/bookings", body, format="json", HTTP_IDEMPOTENCY_KEY=f"race-{customer.pk}"
                )
                return response.status_code, response.json().get("code", "")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        results = list(pool.map(attempt, customers))

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * (REQUESTS - 1), statuses
    assert {code for status, code in results if status == 409} == {"slot_taken"}
    assert Booking.objects.count() == 1
    assert Booking.objects.get().status == "pending_payment"
    assert Payment.objects.count() == 1  # the losers' payments rolled back with them


def test_without_the_service_the_constraint_alone_lets_one_of_many_concurrent_inserts_through():
    """Raw inserts, no check and no lock: PostgreSQL's exclusion constraint is the guarantee.

    Losers get the constraint's IntegrityError, or a deadlock error when two conflicting
    inserts check each other at once (documented PostgreSQL behaviour, and why the service
    queues holds on the resource's row).
    """
    from django.db import IntegrityError, OperationalError, transaction

    hall = ResourceFactory()
    customer = UserFactory()
    threads = 30
    barrier = threading.Barrier(threads, timeout=60)

    def insert(_) -> str:
        try:
            barrier.wait()
            with transaction.atomic():
                Booking.objects.create(
                    resource=hall, customer=customer, starts_at=local(3, 10), ends_at=local(3, 12),
                    payment_kind="full", amount_total=80, amount_due=80, currency="EUR",
                )  # fmt: skip
            return "ok"
        except IntegrityError as exc:
            assert "booking_no_overlap" in str(exc)
            return "refused"
        except OperationalError as exc:
            assert "deadlock" in str(exc)
            return "refused"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(insert, range(threads)))

    assert sorted(outcomes) == ["ok"] + ["refused"] * (threads - 1)
    assert Booking.objects.count() == 1
