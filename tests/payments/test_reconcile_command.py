"""`manage.py payments reconcile`: beat's reconciliation done in the command's own process."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from payments import services
from payments.models import Payment, Refund, SandboxCharge
from tests.payments.test_sandbox_e2e import start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_reconcile_verifies_stale_payments_and_sends_lost_refunds_with_progress_lines():
    stale, _ = start_sandbox_payment()  # paid at the gateway, its webhook lost
    SandboxCharge.objects.filter(reference=stale.gateway_reference).update(status="succeeded")
    Payment.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    fresh, _ = start_sandbox_payment()  # pending for a moment only: left alone
    refunded, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=refunded.gateway_reference).update(status="succeeded")
    services.payment_verify(payment_id=refunded.pk)
    refund = services.refund_reserve(
        payment_id=refunded.pk, amount=None, reason="x", idempotency_key="lost", requested_by_id=None
    )
    Refund.objects.filter(pk=refund.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    out = StringIO()

    call_command("payments", "reconcile", stdout=out)

    assert Payment.objects.get(pk=stale.pk).status == "succeeded"
    assert Payment.objects.get(pk=fresh.pk).status == "pending"
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("payments verified: 1 done in ")
    assert lines[1].startswith("refunds sent: 1 done in ")
    assert lines[2] == "payments verified: 1 succeeded; refunds sent: 1 succeeded"
