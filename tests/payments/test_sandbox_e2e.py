"""End to end with a real worker: sandbox page -> signed webhook -> verification -> payment events."""

import hashlib
import hmac
import json

import pytest
from django.test import override_settings

from payments import policy, services
from payments.gateways.base import CheckoutRequest
from payments.models import Payment, SandboxCharge, WebhookEvent
from payments.registry import gateway_for
from tests.conftest import wait_for
from tests.events.test_backbone import ExternalConsumer
from tests.factories import GadgetFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server):
    with override_settings(SITE_URL=live_server.url):
        yield live_server


def start_sandbox_payment() -> tuple[Payment, str]:
    gadget = GadgetFactory()
    payment = policy.payment_open(
        customer_id=gadget.customer_id, purpose="gadget", item_ids=[gadget.code], gateway="sandbox"
    )
    session = gateway_for("sandbox").create_checkout(
        CheckoutRequest(
            payment_id=payment.public_id,
            amount=payment.amount,
            currency=payment.currency,
            description="Studio A, 2 hours",
            customer_email="c@example.com",
            return_url="",
            idempotency_key=payment.public_id,
        )
    )
    payment = services.payment_checkout_started(
        payment_id=payment.pk, reference=session.reference, checkout_url=session.redirect_url, raw=session.raw
    )
    return payment, session.redirect_url


@pytest.mark.parametrize(
    ("action", "status", "event_type"),
    [("pay", "succeeded", "payment.completed"), ("decline", "failed", "payment.failed")],
)
def test_sandbox_page_to_payment_event_on_the_exchange(
    site, celery_worker, client, action, status, event_type
):
    consumer = ExternalConsumer("payment.#")
    try:
        payment, url = start_sandbox_payment()
        assert url == f"{site.url}/pay/sandbox/{payment.gateway_reference}"
        page = client.get(url.removeprefix(site.url))
        assert b"Pay" in page.content and b"75.00 USD" in page.content

        client.post(url.removeprefix(site.url), {"action": action})

        received = consumer.take(2, timeout=30)
    finally:
        consumer.close()
    assert [envelope["type"] for _, envelope in received] == ["payment.created", event_type]
    final = received[1][1]["data"]
    assert final["payment_id"] == payment.public_id
    assert final["amount"] == "75.00"
    payment.refresh_from_db()
    assert payment.status == status
    webhook = WebhookEvent.objects.get(payment=payment)
    assert webhook.signature_valid and webhook.processed_at is not None
    if action == "decline":
        assert final["error"] == payment.last_error == "Declined by the customer on the sandbox page"


def test_a_second_press_changes_nothing(site, celery_worker, client):
    payment, url = start_sandbox_payment()
    client.post(url.removeprefix(site.url), {"action": "pay"})
    client.post(url.removeprefix(site.url), {"action": "decline"})

    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "succeeded", what="the payment to succeed")
    assert SandboxCharge.objects.get(reference=payment.gateway_reference).status == "succeeded"


def test_a_forged_webhook_gets_400_is_kept_and_changes_nothing(site, celery_worker, client):
    payment, _ = start_sandbox_payment()
    body = json.dumps(
        {"id": "evt_x", "data": {"reference": payment.gateway_reference, "status": "succeeded",
                                 "amount": "75.00", "currency": "USD"}}
    ).encode()  # fmt: skip
    forged = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()

    response = client.post(
        "/api/payments/webhook/sandbox",
        body,
        content_type="application/json",
        HTTP_X_SANDBOX_SIGNATURE=forged,
    )

    assert response.status_code == 400
    attempt = WebhookEvent.objects.get()
    assert attempt.signature_valid is False and "X-Sandbox-Signature" in attempt.error
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_a_duplicate_webhook_is_stored_once(site, celery_worker, client):
    payment, url = start_sandbox_payment()
    client.post(url.removeprefix(site.url), {"action": "pay"})
    wait_for(
        lambda: WebhookEvent.objects.filter(processed_at__isnull=False).exists(), what="the first webhook"
    )

    from payments.tasks import sandbox_webhook_deliver

    sandbox_webhook_deliver.delay(payment.gateway_reference)  # the provider sends it again

    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "succeeded", what="the payment")
    assert WebhookEvent.objects.filter(signature_valid=True).count() == 1


def test_a_signed_webhook_for_an_unknown_payment_is_kept_with_the_reason(site, celery_worker, client):
    from payments.gateways.sandbox import SIGNATURE_HEADER, sign

    body = json.dumps(
        {"id": "evt_stray", "data": {"reference": "sbx_nobody", "status": "succeeded",
                                     "amount": "5.00", "currency": "USD"}}
    ).encode()  # fmt: skip
    signature = sign(body, gateway_for("sandbox").secret)

    response = client.post(
        "/api/payments/webhook/sandbox", body, content_type="application/json",
        headers={SIGNATURE_HEADER: signature},
    )  # fmt: skip

    assert response.status_code == 200  # stored: the provider must not resend it forever
    stray = wait_for(
        lambda: WebhookEvent.objects.filter(event_id="evt_stray", processed_at__isnull=False).first(),
        what="the stray webhook to be processed",
    )
    assert stray.error == "no payment with reference 'sbx_nobody'"
    assert stray.payment is None


@override_settings(PAYMENT_GATEWAYS={"sandbox": {"secret": "documented-secret"}})
def test_a_webhook_signed_as_the_docs_say_is_accepted(client):
    """docs/payments.md: hex HMAC-SHA256 of the raw body, keyed with the hex SHA-256 of
    "sandbox-webhooks:<secret>"."""
    body = json.dumps(
        {"id": "evt_docs", "data": {"reference": "sbx_docs", "status": "succeeded", "amount": "5.00",
                                    "currency": "USD"}}
    ).encode()  # fmt: skip
    key = hashlib.sha256(b"sandbox-webhooks:documented-secret").hexdigest().encode()

    signed = client.post(
        "/api/payments/webhook/sandbox", body, content_type="application/json",
        headers={"X-Sandbox-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()},
    )  # fmt: skip
    keyed_with_the_secret = client.post(
        "/api/payments/webhook/sandbox", body, content_type="application/json",
        headers={"X-Sandbox-Signature": hmac.new(b"documented-secret", body, hashlib.sha256).hexdigest()},
    )  # fmt: skip

    assert (signed.status_code, keyed_with_the_secret.status_code) == (200, 400)
