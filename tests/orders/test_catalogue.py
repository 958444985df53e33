"""The public catalogue API: filters, search, ordering, and its cache."""

import json
from decimal import Decimal

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from core.models import OutboxEvent
from orders.models import Variant
from tests.factories import SuperuserFactory, UserFactory
from tests.orders.factories import CategoryFactory, ProductFactory, VariantFactory
from tests.orders.helpers import checkout, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def shop():
    toys = CategoryFactory(name="Toys", slug="toys")
    wooden = CategoryFactory(name="Wooden", slug="wooden", parent=toys)
    books = CategoryFactory(name="Books", slug="books")
    train = ProductFactory(name="Beech train", slug="beech-train", category=wooden)
    VariantFactory(product=train, sku="TRAIN-S", price=Decimal("20.00"), stock_on_hand=3)
    VariantFactory(product=train, sku="TRAIN-L", price=Decimal("35.00"), stock_on_hand=0)
    blocks = ProductFactory(name="Alphabet blocks", slug="alphabet-blocks", category=toys)
    VariantFactory(product=blocks, sku="BLOCKS", price=Decimal("12.50"), stock_on_hand=0)
    atlas = ProductFactory(
        name="Atlas of animals", slug="atlas", category=books, description="Maps and animals"
    )
    VariantFactory(product=atlas, sku="ATLAS", price=Decimal("18.00"), stock_on_hand=5)
    hidden = ProductFactory(name="Prototype", slug="prototype", category=toys, is_active=False)
    VariantFactory(product=hidden, sku="PROTO")
    ProductFactory(name="No variants yet", slug="empty", category=toys)
    return {"toys": toys, "train": train, "blocks": blocks, "atlas": atlas}


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [p["slug"] for p in response.json()["results"]]


def test_products_on_sale_with_their_variants(anon, shop):
    body = anon.get("/api/products").json()
    assert [p["slug"] for p in body["results"]] == ["alphabet-blocks", "atlas", "beech-train"]
    train = body["results"][2]
    assert train["category"] == "wooden" and train["min_price"] == "20.00"
    assert [(v["sku"], v["price"], v["currency"], v["available"]) for v in train["variants"]] == [
        ("TRAIN-S", "20.00", "USD", 3),
        ("TRAIN-L", "35.00", "USD", 0),
    ]
    assert train["variants"][0]["attributes"] == {"age_range": "3-5"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("category=toys", ["alphabet-blocks", "beech-train"]),  # with its subcategory
        ("category=wooden", ["beech-train"]),
        ("category=nope", []),
        ("min_price=15", ["atlas", "beech-train"]),
        ("max_price=15", ["alphabet-blocks"]),
        ("in_stock=true", ["atlas", "beech-train"]),
        ("in_stock=false", ["alphabet-blocks"]),
        ("search=animals", ["atlas"]),
        ("search=TRAIN-L", ["beech-train"]),
        ("ordering=-min_price", ["beech-train", "atlas", "alphabet-blocks"]),
        ("currency=EUR", []),
    ],
)
def test_filters_search_and_ordering(anon, shop, query, expected):
    assert slugs(anon.get(f"/api/products?{query}")) == expected


def test_a_bad_filter_value_is_a_400_naming_it(anon, shop):
    response = anon.get("/api/products?min_price=cheap")
    assert response.status_code == 400 and "min_price" in response.json()["extra"]["fields"]


def test_product_detail_by_slug(anon, shop):
    assert anon.get("/api/products/atlas").json()["variants"][0]["sku"] == "ATLAS"
    assert anon.get("/api/products/prototype").status_code == 404
    assert anon.get("/api/products/none-such").status_code == 404


def test_categories_nested_by_parent(anon, shop):
    body = anon.get("/api/categories").json()
    assert {(c["slug"], c["parent"]) for c in body} == {("toys", None), ("books", None), ("wooden", "toys")}


@pytest.mark.django_db(transaction=True)  # the cache is invalidated on commit
def test_reads_are_served_from_the_cache_until_something_changes(anon, shop):
    first = anon.get("/api/products/beech-train")
    second = anon.get("/api/products/beech-train")
    assert (first["X-Cache"], second["X-Cache"]) == ("miss", "hit")
    assert second.json() == first.json()

    checkout(client_for(UserFactory()), (Variant.objects.get(sku="TRAIN-S").pk, 2))

    after = anon.get("/api/products/beech-train")
    assert after["X-Cache"] == "miss"
    assert after.json()["variants"][0]["available"] == 1


def test_a_query_string_is_its_own_cache_entry(anon, shop):
    assert anon.get("/api/products?category=toys")["X-Cache"] == "miss"
    assert anon.get("/api/products?category=books")["X-Cache"] == "miss"
    assert anon.get("/api/products?category=toys")["X-Cache"] == "hit"


@pytest.mark.django_db(transaction=True)  # the cache is invalidated on commit
def test_an_admin_edit_shows_in_the_next_read(anon, shop, client):
    train = shop["train"]
    assert anon.get("/api/products/beech-train").json()["name"] == "Beech train"
    assert anon.get("/api/products/beech-train")["X-Cache"] == "hit"
    client.force_login(SuperuserFactory())

    response = client.post(
        f"/admin/orders/product/{train.pk}/change/", admin_form(train, name="Beech train deluxe")
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    after = anon.get("/api/products/beech-train")
    assert after["X-Cache"] == "miss" and after.json()["name"] == "Beech train deluxe"


@pytest.mark.django_db(transaction=True)  # the cache is invalidated on commit
def test_an_admin_stock_change_shows_in_the_next_read_without_losing_reservations(anon, shop, client):
    train = shop["train"]
    small = Variant.objects.get(sku="TRAIN-S")
    anon.get("/api/products/beech-train")
    checkout(client_for(UserFactory()), (small.pk, 1))  # reserved after the form was "read"
    client.force_login(SuperuserFactory())

    client.post(f"/admin/orders/product/{train.pk}/change/", admin_form(train, stock={"TRAIN-S": 8}))

    small.refresh_from_db()
    assert (small.stock_on_hand, small.stock_reserved) == (8, 1)
    assert anon.get("/api/products/beech-train").json()["variants"][0]["available"] == 7
    assert not OutboxEvent.objects.filter(type="stock.low").exists()

    client.post(f"/admin/orders/product/{train.pk}/change/", admin_form(train, stock={"TRAIN-S": 2}))

    low = OutboxEvent.objects.get(type="stock.low")
    assert (low.data["sku"], low.data["available"]) == ("TRAIN-S", 1)


def admin_form(product, *, name=None, stock=None, shown=None) -> dict:
    """The admin's change form for `product`, as the browser would post it: `shown` is the
    stock on hand the page showed when it was opened (default: what the database holds)."""
    variants = list(product.variants.order_by("pk"))
    data = {
        "category": product.category_id,
        "name": name or product.name,
        "slug": product.slug,
        "description": product.description,
        "is_active": "on",
        "variants-TOTAL_FORMS": len(variants),
        "variants-INITIAL_FORMS": len(variants),
        "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 1000,
        "images-TOTAL_FORMS": 0,
        "images-INITIAL_FORMS": 0,
        "images-MIN_NUM_FORMS": 0,
        "images-MAX_NUM_FORMS": 1000,
    }
    for i, v in enumerate(variants):
        data |= {
            f"variants-{i}-id": v.pk,
            f"variants-{i}-product": product.pk,
            f"variants-{i}-sku": v.sku,
            f"variants-{i}-name": v.name,
            f"variants-{i}-price": str(v.price),
            f"variants-{i}-currency": v.currency,
            f"variants-{i}-attributes": json.dumps(v.attributes),
            f"variants-{i}-is_active": "on",
            f"variants-{i}-stock_on_hand": (stock or {}).get(v.sku, v.stock_on_hand),
            f"initial-variants-{i}-stock_on_hand": (shown or {}).get(v.sku, v.stock_on_hand),
            f"variants-{i}-low_stock_threshold": v.low_stock_threshold,
        }
    return data


def test_with_redis_down_reads_still_work_from_the_database(anon, shop):
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    with override_settings(CACHES=dead):
        listing = anon.get("/api/products")
        detail = anon.get("/api/products/atlas")
        categories = anon.get("/api/categories")

    assert listing.status_code == detail.status_code == categories.status_code == 200
    assert "X-Cache" not in listing
    assert len(listing.json()["results"]) == 3 and detail.json()["slug"] == "atlas"


@override_settings(CATALOGUE_CACHE_SECONDS=0)
def test_the_cache_can_be_turned_off(anon, shop):
    assert "X-Cache" not in anon.get("/api/products")


@pytest.mark.django_db(transaction=True)
def test_an_admin_stock_edit_is_applied_as_a_difference_to_what_the_page_showed(shop, client):
    from payments.gateways.base import Status
    from tests.orders.helpers import deliver, gateway_reports, order_of

    train = shop["train"]
    small = Variant.objects.get(sku="TRAIN-S")  # 3 on hand when staff open the page
    order = order_of(checkout(client_for(UserFactory()), (small.pk, 2)))
    gateway_reports(order.payment, Status.SUCCEEDED)
    deliver("payment.completed", payment_id=order.payment.public_id)  # 2 sold: 1 on hand
    client.force_login(SuperuserFactory())

    client.post(
        f"/admin/orders/product/{train.pk}/change/",
        admin_form(train, stock={"TRAIN-S": 8}, shown={"TRAIN-S": 3}),
    )  # staff received 5 more

    small.refresh_from_db()
    assert (small.stock_on_hand, small.stock_reserved) == (6, 0)


@pytest.mark.django_db(transaction=True)
def test_an_admin_stock_edit_below_what_is_reserved_is_refused(shop, client):
    train = shop["train"]
    small = Variant.objects.get(sku="TRAIN-S")
    checkout(client_for(UserFactory()), (small.pk, 2))  # 2 of 3 reserved
    client.force_login(SuperuserFactory())

    response = client.post(
        f"/admin/orders/product/{train.pk}/change/", admin_form(train, stock={"TRAIN-S": 1}), follow=True
    )

    assert "2 are reserved by unpaid orders" in response.content.decode()
    small.refresh_from_db()
    assert (small.stock_on_hand, small.stock_reserved) == (3, 2)
