"""What the database itself refuses, whatever the code above it does."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.utils import timezone

from payments.models import Payment, WebhookEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def make_payment(**fields) -> Payment:
    defaults = {
        "customer": UserFactory(),
        "amount": Decimal("75.00"),
        "currency": "USD",
        "gateway": "sandbox",
        "purpose": "gadget",
        "deadline": timezone.now() + timedelta(minutes=30),
    }
    return Payment.objects.create(**(defaults | fields))


def test_public_ids_look_like_pay_and_differ():
    first, second = make_payment(), make_payment()
    assert first.public_id.startswith("pay_")
    assert first.public_id != second.public_id


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1.00")])
def test_amount_must_be_positive(amount):
    with pytest.raises(IntegrityError):
        make_payment(amount=amount)


def test_refunds_cannot_exceed_the_amount():
    payment = make_payment()
    with pytest.raises(IntegrityError):
        Payment.objects.filter(pk=payment.pk).update(refunded_amount=Decimal("75.01"))


def test_a_gateway_reference_belongs_to_one_payment():
    make_payment(gateway_reference="ps_123")
    make_payment(gateway_reference="")  # not yet known: many may wait
    make_payment(gateway_reference="")
    with pytest.raises(IntegrityError):
        make_payment(gateway_reference="ps_123")


def test_a_signed_webhook_event_is_stored_once_but_bad_attempts_are_all_kept():
    WebhookEvent.objects.create(gateway="paystack", event_id="evt_1", body="{}", signature_valid=False)
    WebhookEvent.objects.create(gateway="paystack", event_id="evt_1", body="{}", signature_valid=False)
    WebhookEvent.objects.create(gateway="paystack", event_id="evt_1", body="{}", signature_valid=True)
    with pytest.raises(IntegrityError):
        WebhookEvent.objects.create(gateway="paystack", event_id="evt_1", body="{}", signature_valid=True)
