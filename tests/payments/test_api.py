"""The payments API: idempotent creation, who sees what, refunds, and a real worker end to end."""

from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from payments.api import views
from payments.models import Payment, Refund, WebhookEvent
from tests.conftest import wait_for
from tests.events.test_backbone import ExternalConsumer
from tests.factories import GadgetFactory, StaffFactory, UserFactory
from tests.payments.fakes.paystack import FakePaystack

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    client.user = user
    return client


def body_for(client, **change) -> dict:
    """A payment for the client's own gadget (one per client), with `change` on top."""
    if not hasattr(client, "gadget"):
        client.gadget = GadgetFactory(customer=client.user)
    return {"purpose": "gadget", "purpose_id": client.gadget.code} | change


def create(client, body=None, key="k-1"):
    body = body_for(client) if body is None else body
    return client.post("/api/payments", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_creating_needs_an_idempotency_key():
    client = client_for(UserFactory())
    response = client.post("/api/payments", body_for(client), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"


def test_create_opens_the_sandbox_checkout():
    user = UserFactory()
    response = create(client_for(user))

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["amount"] == "75.00"
    assert body["checkout_url"].endswith(f"/pay/sandbox/{Payment.objects.get().gateway_reference}")
    assert body["customer_id"] == user.pk


def test_a_retried_request_gets_the_first_answer_and_creates_nothing_more():
    client = client_for(UserFactory())
    first = create(client)
    again = create(client)

    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replay"] == "true"
    assert Payment.objects.count() == 1


def test_the_same_key_with_other_parameters_is_refused():
    client = client_for(UserFactory())
    create(client)
    response = create(client, body_for(client, description="another"))

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Payment.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "1.00"}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"kind": "deposit"}, "kind"),
        ({"purpose_id": ""}, "purpose_id"),
        ({"gateway": "nopay"}, "gateway"),
    ],
)
def test_bad_input_names_the_field(change, field):
    client = client_for(UserFactory())
    response = create(client, body_for(client, **change))

    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]
    assert not Payment.objects.exists()


def test_customers_see_only_their_own_payments():
    alice, bob = UserFactory(), UserFactory()
    alices = create(client_for(alice)).json()["id"]
    create(client_for(bob), key="k-2")

    listed = client_for(bob).get("/api/payments").json()
    assert [p["id"] for p in listed["results"]] != [alices]
    assert len(listed["results"]) == 1
    assert client_for(bob).get(f"/api/payments/{alices}").status_code == 404
    assert client_for(alice).get(f"/api/payments/{alices}").status_code == 200
    assert client_for(StaffFactory()).get("/api/payments").json()["count"] == 2


def test_refunds_are_for_staff():
    user = UserFactory()
    payment_id = create(client_for(user)).json()["id"]

    response = client_for(user).post(
        f"/api/payments/{payment_id}/refund", {"reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="r"
    )
    assert response.status_code == 403


def test_a_gateway_outage_answers_503_and_the_retry_reuses_the_payment():
    with (
        FakePaystack() as fake,
        override_settings(
            PAYMENT_ENV="test",
            PAYMENT_GATEWAYS={
                "paystack": {"secret_key": fake.secret, "base_url": fake.base_url, "timeout": (1, 1)}
            },
        ),
    ):
        client = client_for(UserFactory())
        client.gadget = GadgetFactory(customer=client.user, currency="NGN")
        fake.fail_next(503, 503, 503)  # the first try and both of its retries
        down = create(client, body_for(client, gateway="paystack"))
        up = create(client, body_for(client, gateway="paystack"))

    assert down.status_code == 503
    assert down.json()["code"] == "gateway_unavailable"
    assert up.status_code == 201
    assert up.json()["id"] == down.json()["extra"]["payment"]
    assert Payment.objects.get().status == "pending"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_pay_then_partial_and_full_refund_through_the_worker(live_server, celery_worker):
    consumer = ExternalConsumer("payment.refunded")
    try:
        with override_settings(SITE_URL=live_server.url):
            customer = client_for(UserFactory())
            payment = create(customer).json()
            page = Client()  # the customer's browser posts the sandbox page's form
            page.post(payment["checkout_url"].removeprefix(live_server.url), {"action": "pay"})
            wait_for(
                lambda: Payment.objects.get(public_id=payment["id"]).status == "succeeded", what="payment"
            )

            staff = client_for(StaffFactory())
            url = f"/api/payments/{payment['id']}/refund"
            partial = staff.post(
                url, {"amount": "25.00", "reason": "damaged"}, format="json", HTTP_IDEMPOTENCY_KEY="r1"
            )
            assert partial.status_code == 202
            wait_for(
                lambda: Payment.objects.get(public_id=payment["id"]).status == "partially_refunded", what="1"
            )
            rest = staff.post(url, {"reason": "cancelled"}, format="json", HTTP_IDEMPOTENCY_KEY="r2")
            assert rest.json()["amount"] == "50.00"
            wait_for(lambda: Payment.objects.get(public_id=payment["id"]).status == "refunded", what="2")

            too_much = staff.post(
                url, {"amount": "1.00", "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="r3"
            )
            assert too_much.status_code == 422

        received = consumer.take(2)
    finally:
        consumer.close()
    assert [(e["data"]["amount"], e["data"]["full"]) for _, e in received] == [
        ("25.00", False),
        ("50.00", True),
    ]
    assert [r.status for r in Refund.objects.order_by("created_at")] == ["succeeded", "succeeded"]
    assert Payment.objects.get(public_id=payment["id"]).refunded_amount == Decimal("75.00")


def test_one_payment_for_several_items_priced_by_the_server():
    client = client_for(UserFactory())
    codes = [GadgetFactory(customer=client.user, price=price).code for price in ("10.00", "20.00", "30.50")]
    body = {"purpose": "gadget", "item_ids": codes}

    response = client.post("/api/payments/batch", body, format="json", HTTP_IDEMPOTENCY_KEY="b-1")

    assert response.status_code == 201
    answer = response.json()
    assert answer["amount"] == "60.50"
    assert [(a["purpose_id"], a["amount"]) for a in answer["allocations"]] == list(
        zip(codes, ["10.00", "20.00", "30.50"], strict=True)
    )
    payment = Payment.objects.get(public_id=answer["id"])
    assert (payment.purpose, payment.amount, payment.status) == ("gadget", Decimal("60.50"), "pending")


@pytest.mark.parametrize("ids", [[], ["s-1"] * 51], ids=["none", "too-many"])
def test_a_batch_needs_one_to_fifty_items(ids):
    body = {"purpose": "gadget", "item_ids": ids}
    response = client_for(UserFactory()).post(
        "/api/payments/batch", body, format="json", HTTP_IDEMPOTENCY_KEY="b"
    )

    assert response.status_code == 400
    assert "item_ids" in response.json()["extra"]["fields"]
    assert not Payment.objects.exists()


def test_with_payment_env_mock_only_the_sandbox_takes_money(settings):
    settings.PAYMENT_ENV = "mock"
    client = client_for(UserFactory())
    response = create(client, body_for(client, gateway="stripe"))

    assert response.status_code == 400
    assert "gateway" in response.json()["extra"]["fields"]


def test_in_production_the_sandbox_takes_no_money(settings, client):
    payment_url = create(client_for(UserFactory())).json()["checkout_url"]
    settings.PAYMENT_ENV = "production"

    other = client_for(UserFactory())
    refused = create(other, body_for(other, gateway="sandbox"), key="k-prod")
    page = client.post(urlsplit(payment_url).path, {"action": "pay"})

    assert refused.status_code == 400
    assert "gateway" in refused.json()["extra"]["fields"]
    assert page.status_code == 404


def test_a_webhook_for_an_unknown_gateway_is_a_404_in_the_api_shape():
    response = Client().post("/api/payments/webhook/nopay", b"{}", content_type="application/json")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No gateway named nopay.", "extra": {}}


def test_the_webhook_endpoint_takes_only_post():
    response = Client().get("/api/payments/webhook/sandbox")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"


@override_settings(PAYMENT_GATEWAYS={"paystack": {"secret_key": ""}})
def test_a_webhook_for_a_gateway_without_credentials_is_a_503_and_stores_nothing():

    response = Client().post("/api/payments/webhook/paystack", b"{}", content_type="application/json")

    assert response.status_code == 503
    assert response.json()["code"] == "gateway_not_configured"
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    ("gateway", "unset"),
    [
        ("paystack", {"secret_key": ""}),
        ("stripe", {"secret_key": "sk_test_x", "webhook_secret": ""}),
        ("yookassa", {"shop_id": "", "secret_key": ""}),
        ("tinkoff", {"terminal_key": "", "password": ""}),
        ("sberpay", {"username": "u", "password": "p", "callback_token": ""}),
    ],
)
def test_every_unconfigured_gateway_answers_its_webhooks_alike_and_warns_once(gateway, unset, caplog):
    views._warned_unconfigured.discard(gateway)
    with override_settings(PAYMENT_GATEWAYS={gateway: unset}):
        answers = [
            Client().post(f"/api/payments/webhook/{gateway}", b"{}", content_type="application/json")
            for _ in range(2)
        ]

    assert [a.status_code for a in answers] == [503, 503]
    assert {a.json()["code"] for a in answers} == {"gateway_not_configured"}
    assert not WebhookEvent.objects.exists()
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "unconfigured" in r.getMessage()]
    assert len(warnings) == 1
