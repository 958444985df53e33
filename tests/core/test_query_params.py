"""Query parameters are checked, not ignored or left to fail in the database.

An unknown `ordering`, a malformed or out-of-range `limit`/`offset`/`cursor`, a malformed
boolean, an impossible datetime or UTC offset and an unknown choice each answer 400 with
the parameter named in `extra.fields`, on the products list, orders, bookings, payments and
the events list. Currency codes are case-insensitive. The events list is paged by cursor.
"""

import uuid
from base64 import b64encode
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from bookings import services as bookings
from core import events
from core.models import OutboxEvent
from tests.bookings.conftest import local
from tests.core.test_schema_accuracy import assert_matches_schema
from tests.factories import GadgetFactory, ResourceFactory, SuperuserFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, order_of

# These tests publish made-up event data: what they test is not an app's contract.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("any_event_data")]

PRODUCTS, ORDERS, BOOKINGS, PAYMENTS, EVENTS = (
    "/api/products",
    "/api/orders",
    "/api/bookings",
    "/api/payments",
    "/api/integrations/events",
)
LISTS = [PRODUCTS, ORDERS, BOOKINGS, PAYMENTS, EVENTS]
OFFSET_LISTS = [PRODUCTS, ORDERS, BOOKINGS, PAYMENTS]  # the events list pages by cursor
TOO_BIG = str(2**63)  # one past the database's bigint


@pytest.fixture
def data():
    """Something in every list: USD and EUR products, an order, a booking, a payment, events."""
    customer = UserFactory()
    client = APIClient()
    client.force_authenticate(customer)
    usd = VariantFactory(currency="USD", price="25.00", product__name="Abacus")
    VariantFactory(currency="EUR", price="30.00", product__name="Blocks", stock_on_hand=0)
    order = order_of(checkout(client, (usd.pk, 1)))
    booking = bookings.booking_hold(
        customer_id=customer.pk,
        resource_id=ResourceFactory().pk,
        starts_at=local(3, 10),
        ends_at=local(3, 12),
    )
    paid = client.post(
        "/api/payments",
        {"purpose": "gadget", "purpose_id": GadgetFactory(customer=customer).code},
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert paid.status_code == 201
    return {"order": order, "booking": booking, "payment_id": paid.json()["id"]}


@pytest.fixture
def staff():
    client = APIClient()
    client.force_authenticate(SuperuserFactory())
    return client


def refused(response, parameter: str, path: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert parameter in body["extra"]["fields"], body
    assert body["message"].startswith(f"{parameter}: ")
    assert_matches_schema(response, path, "get")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("ordering", ["bogus", "-bogus", "name,bogus", "--created_at", "data__x"])
def test_an_unknown_ordering_is_refused(data, staff, path, ordering):
    refused(staff.get(path, {"ordering": ordering}), "ordering", path)


@pytest.mark.parametrize(
    ("path", "ordering", "first"),
    [
        (PRODUCTS, "-min_price", "Blocks"),
        (PRODUCTS, "name", "Abacus"),
        (ORDERS, "-total", None),
        (BOOKINGS, "-start", None),
        (PAYMENTS, "amount,-created_at", None),
        (EVENTS, "seq", None),
    ],
)
def test_a_known_ordering_is_applied(data, staff, path, ordering, first):
    response = staff.get(path, {"ordering": ordering})

    assert response.status_code == 200, response.content
    if first:
        assert response.json()["results"][0]["name"] == first


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["-1", "0", "abc", "1.5", "501", TOO_BIG, "9" * 5000, "1e3", " 5x"])
def test_a_malformed_or_out_of_range_limit_is_refused(data, staff, path, limit):
    refused(staff.get(path, {"limit": limit}), "limit", path)


@pytest.mark.parametrize("path", OFFSET_LISTS)
@pytest.mark.parametrize("offset", ["-1", "abc", TOO_BIG, "1.0"])
def test_a_malformed_or_out_of_range_offset_is_refused(data, staff, path, offset):
    refused(staff.get(path, {"offset": offset}), "offset", path)


@pytest.mark.parametrize("path", OFFSET_LISTS)
def test_limit_and_offset_within_range_page(data, staff, path):
    response = staff.get(path, {"limit": "1", "offset": str(2**63 - 1)})

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert staff.get(path, {"limit": "500", "offset": "0"}).status_code == 200
    assert staff.get(path, {"limit": "", "offset": ""}).status_code == 200  # empty: the default


@pytest.mark.parametrize(
    ("path", "parameter"),
    [(PRODUCTS, "in_stock"), (EVENTS, "published"), (ORDERS, "needs_attention")],
)
@pytest.mark.parametrize("value", ["maybe", "2", "tru", "null"])
def test_a_malformed_boolean_is_refused(data, staff, path, parameter, value):
    refused(staff.get(path, {parameter: value}), parameter, path)


def test_booleans_filter(data, staff):
    in_stock = staff.get(PRODUCTS, {"in_stock": "TRUE"}).json()["results"]
    sold_out = staff.get(PRODUCTS, {"in_stock": "0"}).json()["results"]

    assert [p["name"] for p in in_stock] == ["Abacus"]
    assert [p["name"] for p in sold_out] == ["Blocks"]


@pytest.mark.parametrize(
    "value",
    [
        "2020-02-21T07:33:14-17:56",  # no place is 17 h 56 min behind UTC (and PostgreSQL refuses it)
        "2020-02-21T07:33:14+15:00",
        "2020-02-30T00:00:00Z",
        "2020-02-21T25:00:00Z",
        "2020-02-21T07:33:14+24:00",
        "9999-12-31T23:00:00-05:00",  # past the last instant
        "yesterday",
    ],
)
@pytest.mark.parametrize("parameter", ["occurred_before", "occurred_after"])
def test_an_impossible_datetime_or_offset_is_refused(staff, parameter, value):
    refused(staff.get(EVENTS, {parameter: value}), parameter, EVENTS)


def test_real_offsets_filter_by_the_instant(staff):
    with transaction.atomic():
        event = events.publish("payment.created", {"payment_id": "pay_1"})
    occurred = OutboxEvent.objects.get(pk=event.pk).occurred_at
    just_after = (occurred + timedelta(seconds=1)).astimezone(timezone.get_fixed_timezone(-12 * 60))

    found = staff.get(EVENTS, {"occurred_before": just_after.isoformat()}).json()["results"]
    none = staff.get(EVENTS, {"occurred_after": just_after.replace(tzinfo=None).isoformat() + "+14:00"})

    assert [e["id"] for e in found] == [str(event.event_id)]
    assert none.status_code == 200


@pytest.mark.parametrize(
    ("path", "parameter", "value"),
    [
        (ORDERS, "status", "bogus"),
        (BOOKINGS, "status", "bogus"),
        (BOOKINGS, "payment_status", "pending"),  # a payment's status, not a booking's
        (BOOKINGS, "resource", "abc"),
        (BOOKINGS, "resource", TOO_BIG),
        (PAYMENTS, "status", "paid"),  # a booking's payment status, not a payment's
        (PAYMENTS, "gateway", "nope"),
        (PRODUCTS, "currency", "XYZ"),
        (ORDERS, "currency", "dollars"),
        (BOOKINGS, "currency", "E"),
        (PAYMENTS, "currency", "usdx"),
        (PRODUCTS, "min_price", "abc"),
        (PRODUCTS, "max_price", "1e999999"),
        (PRODUCTS, "min_price", "NaN"),
    ],
)
def test_an_unknown_choice_or_malformed_value_is_refused(data, staff, path, parameter, value):
    refused(staff.get(path, {parameter: value}), parameter, path)


def test_resources_refuse_an_unknown_kind(data):
    refused(APIClient().get("/api/bookings/resources", {"kind": "room"}), "kind", "/api/bookings/resources")


@pytest.mark.parametrize("code", ["usd", "USD", "Usd", " usd "])
def test_currency_codes_are_case_insensitive(data, staff, code):
    products = staff.get(PRODUCTS, {"currency": code}).json()["results"]
    orders = staff.get(ORDERS, {"currency": code}).json()["results"]
    payments = staff.get(PAYMENTS, {"currency": code}).json()["results"]
    bookings_in_usd = staff.get(BOOKINGS, {"currency": code}).json()["results"]

    assert [p["name"] for p in products] == ["Abacus"]
    assert [o["number"] for o in orders] == [data["order"].number]
    assert {p["currency"] for p in payments} == {"USD"} and len(payments) == 2
    assert bookings_in_usd == []  # the hall is priced in euros
    assert len(staff.get(BOOKINGS, {"currency": "eur"}).json()["results"]) == 1


# --- the events list: paged by cursor ---------------------------------------------------------
def publish(count: int) -> list[str]:
    with transaction.atomic():
        return [str(events.publish("order.paid", {"order_id": f"A-{n}"}).event_id) for n in range(count)]


def follow(client, url: str, params: dict | None = None) -> list[str]:
    ids = []
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        ids += [event["id"] for event in response.json()["results"]]
        if not response.json()["next"]:
            return ids
        response = client.get(response.json()["next"])


def test_the_events_list_is_paged_by_cursor_newest_first(staff):
    published = publish(7)

    first = staff.get(EVENTS, {"limit": 3}).json()

    assert set(first) == {"next", "previous", "results"}
    assert "cursor=" in first["next"]
    assert follow(staff, EVENTS, {"limit": 3}) == published[::-1]
    assert follow(staff, EVENTS, {"limit": 3, "ordering": "seq"}) == published


def test_a_page_stays_put_while_events_are_added(staff):
    published = publish(4)
    first = staff.get(EVENTS, {"limit": 2, "ordering": "-seq"}).json()

    publish(3)
    second = staff.get(first["next"]).json()

    assert [e["id"] for e in second["results"]] == published[1::-1]


def test_an_integration_follows_the_log_oldest_first_and_resumes(staff):
    published = publish(3)
    page = staff.get(EVENTS, {"ordering": "seq", "limit": 2}).json()
    page = staff.get(page["next"]).json()
    assert [e["id"] for e in page["results"]] == published[2:]
    assert [e["seq"] for e in page["results"]] == sorted(e["seq"] for e in page["results"])


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        b64encode(b"o=1&r=0&p=abc").decode(),  # a position that is no seq
        b64encode(f"p={2**63}".encode()).decode(),
        b64encode(b"o=-1").decode(),
        b64encode(b"r=x").decode(),
    ],
)
def test_a_cursor_the_list_did_not_give_is_refused(staff, cursor):
    publish(1)

    refused(staff.get(EVENTS, {"cursor": cursor}), "cursor", EVENTS)
