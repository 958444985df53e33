"""The OpenAPI schema covers every endpoint and builds without warnings."""

import pytest
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> str:
    target = tmp_path_factory.mktemp("schema") / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    return target.read_text()


@pytest.mark.parametrize(
    "path",
    [
        "/api/categories",
        "/api/products",
        "/api/products/{slug}",
        "/api/cart",
        "/api/cart/items",
        "/api/checkout",
        "/api/orders",
        "/api/orders/{number}/cancel",
        "/api/orders/{number}/pay",
        "/api/payments",
        "/api/payments/batch",
        "/api/payments/{payment_id}/refund",
        "/api/payments/webhook/{gateway}",
        "/api/bookings",
        "/api/bookings/{booking_id}/confirm",
        "/api/integrations/events",
    ],
)
def test_endpoints_are_in_the_schema(schema, path):
    assert f"\n  {path}:\n" in schema
