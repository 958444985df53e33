"""Beat's payment passes: lost webhooks, overdue payments, stranded inbox rows; and the admin."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import OutboxEvent
from payments import reconciliation
from payments.models import Payment, SandboxCharge, WebhookEvent
from payments.tasks import reconcile
from tests.conftest import wait_for
from tests.factories import SuperuserFactory
from tests.payments.test_sandbox_e2e import start_sandbox_payment


def charge_of(payment: Payment) -> SandboxCharge:
    return SandboxCharge.objects.get(reference=payment.gateway_reference)


def paid_at_the_gateway_but_never_told(payment: Payment) -> None:
    """The customer paid; the webhook was lost on the way."""
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_reconciliation_finds_a_payment_whose_webhook_was_lost(celery_worker):
    payment, _ = start_sandbox_payment()
    paid_at_the_gateway_but_never_told(payment)
    Payment.objects.filter(pk=payment.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    reconcile.delay()

    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "succeeded", what="the re-verification")
    assert OutboxEvent.objects.filter(type="payment.completed").count() == 1


@pytest.mark.django_db
def test_reverification_is_bounded_per_gateway(settings, celery_app_without_worker):
    settings.PAYMENT_REVERIFY_BATCH = 2
    for _ in range(3):
        payment, _ = start_sandbox_payment()
        Payment.objects.filter(pk=payment.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    start_sandbox_payment()  # fresh: not stale yet

    assert reconciliation.payments_reverify_stale() == 2
    first_pass = set(Payment.objects.exclude(reverify_queued_at=None).values_list("pk", flat=True))
    assert reconciliation.payments_reverify_stale() == 2
    # The one left out the first time goes first now: every stale payment gets its turn.
    assert Payment.objects.filter(reverify_queued_at=None).count() == 1  # only the fresh one
    assert len(first_pass) == 2


@pytest.mark.django_db
def test_an_overdue_unpaid_payment_expires():
    payment, _ = start_sandbox_payment()
    Payment.objects.filter(pk=payment.pk).update(deadline=timezone.now() - timedelta(minutes=1))

    assert reconciliation.payments_expire_overdue() == 1

    assert Payment.objects.get(pk=payment.pk).status == "expired"
    assert OutboxEvent.objects.get(type="payment.cancelled").data["reason"] == "expired"


@pytest.mark.django_db
def test_an_overdue_payment_that_was_paid_completes_instead_of_expiring():
    payment, _ = start_sandbox_payment()
    paid_at_the_gateway_but_never_told(payment)
    Payment.objects.filter(pk=payment.pk).update(deadline=timezone.now() - timedelta(minutes=1))

    assert reconciliation.payments_expire_overdue() == 0
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_stored_webhook_whose_task_was_lost_is_processed_by_the_sweep(celery_worker):
    """Never dispatched, or dispatched longer ago than a task's retries last: dispatched again."""
    payment, _ = start_sandbox_payment()
    paid_at_the_gateway_but_never_told(payment)
    event = WebhookEvent.objects.create(
        gateway="sandbox", event_id="evt_lost", body="{}", signature_valid=True, payment=payment
    )
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(minutes=15))

    recent = WebhookEvent.objects.create(
        gateway="sandbox", event_id="evt_recent", body="{}", signature_valid=True, payment=payment
    )
    WebhookEvent.objects.filter(pk=recent.pk).update(dispatched_at=timezone.now())  # its task may still retry

    assert reconciliation.webhooks_sweep() == 1

    wait_for(lambda: WebhookEvent.objects.get(pk=event.pk).processed_at, what="the swept webhook")
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"


@pytest.mark.django_db
def test_admin_lists_payments_and_the_mismatch_list(client):
    client.force_login(SuperuserFactory())
    flagged, _ = start_sandbox_payment()
    fine, _ = start_sandbox_payment()
    Payment.objects.filter(pk=flagged.pk).update(flagged_reason="gateway reports 70.00 USD paid")

    assert client.get("/admin/payments/payment/").status_code == 200
    assert client.get(f"/admin/payments/payment/{flagged.pk}/change/").status_code == 200
    mismatches = client.get("/admin/payments/flaggedpayment/").content.decode()
    assert flagged.public_id in mismatches
    assert fine.public_id not in mismatches
    assert "gateway reports 70.00 USD paid" in mismatches


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_reserved_refund_whose_task_was_lost_is_sent_by_the_sweep(celery_worker):
    from payments import services
    from payments.models import Refund

    payment, _ = start_sandbox_payment()
    paid_at_the_gateway_but_never_told(payment)
    services.payment_verify(payment_id=payment.pk)
    refund = services.refund_reserve(
        payment_id=payment.pk, amount=None, reason="x", idempotency_key="lost", requested_by_id=None
    )
    Refund.objects.filter(pk=refund.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    assert reconciliation.refunds_sweep() == 1

    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "refunded", what="the swept refund")
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
