"""Renewal and dunning on a controllable clock (each service takes `now`): charges of the saved
sandbox method, declines retried on the schedule, outages retried by key, and the fallback to
a payment link."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.events import Event
from core.models import OutboxEvent
from payments import policy, reconciliation
from payments import services as services_payments
from payments.errors import GatewayUnreachable
from payments.methods import method_for_charge
from payments.models import Payment, SandboxCharge, SandboxMethod, SavedPaymentMethod
from subscriptions import services
from subscriptions.models import Invoice, Subscription
from subscriptions.subscribers import subscriptions_on_payment_failed
from tests.subscriptions.factories import ChildFactory, PlanFactory
from tests.subscriptions.helpers import (
    batch,
    client_for,
    completed,
    event_types,
    last_seq,
    paid_subscription,
    payment_of,
    sandbox_pay,
)

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


@pytest.fixture
def active():
    child = ChildFactory()
    return paid_subscription(client_for(child.customer), child, PlanFactory(price="30.00"))


def renew(subscription: Subscription, now) -> Invoice:
    invoice = services.subscription_renew(subscription_id=subscription.pk, now=now)
    assert invoice is not None
    return invoice


def charge(invoice: Invoice, now, *, first: bool = False) -> str:
    """One attempt, and payment.completed delivered when it charged (as the worker would).
    The first is the task the renewal sends, forced past the lease the renewal gave it."""
    outcome = services.invoice_charge(invoice_id=invoice.pk, now=now, force=first)
    if outcome == "charged":
        completed(payment_of(invoice))
    return outcome


def test_a_due_subscription_is_renewed_through_its_saved_method(active):
    period_end = active.current_period_end
    assert services.subscription_renew(subscription_id=active.pk, now=period_end - DAY) is None  # not due yet
    before = last_seq()

    invoice = renew(active, period_end)
    assert charge(invoice, period_end, first=True) == "charged"

    active.refresh_from_db()
    assert active.status == "active"
    assert active.current_period_start == period_end and active.next_renewal_at > period_end
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.period_start == period_end
    payment = Payment.objects.get(public_id=invoice.payment_id)
    assert payment.saved_method is not None and payment.gateway == "sandbox"
    assert event_types(before, "subscription.") == ["subscription.renewed"]
    assert event_types(before, "invoice.") == ["invoice.created", "invoice.paid"]
    assert active.toyboxes.count() == 2


def test_a_declining_method_is_dunned_on_the_schedule_then_paused(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.DECLINE)
    start = active.current_period_end
    before = last_seq()
    invoice = renew(active, start)

    assert charge(invoice, start, first=True) == "failed"
    invoice.refresh_from_db()
    assert invoice.attempts == 1 and invoice.next_attempt_at == start + DAY
    assert Subscription.objects.get(pk=active.pk).status == "past_due"
    assert services.invoice_charge(invoice_id=invoice.pk, now=start + DAY / 2) == "skipped"  # not due yet
    for day, next_day in ((1, 3), (3, 5)):
        assert charge(invoice, start + day * DAY) == "failed"
        invoice.refresh_from_db()
        assert invoice.next_attempt_at == start + next_day * DAY
    assert charge(invoice, start + 5 * DAY) == "failed"

    invoice.refresh_from_db()
    active.refresh_from_db()
    assert invoice.status == "uncollectible" and invoice.attempts == 4
    assert active.status == "paused" and "4 times" in active.status_note
    assert SandboxCharge.objects.filter(status="failed").count() == 4  # one charge per attempt
    assert event_types(before, "subscription.") == ["subscription.past_due", "subscription.paused"]
    assert event_types(before, "invoice.") == ["invoice.created", *["invoice.payment_failed"] * 4]


def test_the_final_step_can_cancel_instead(active, settings):
    settings.SUBSCRIPTION_DUNNING_DAYS = [1]
    settings.SUBSCRIPTION_DUNNING_FINAL = "cancel"
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.DECLINE)
    start = active.current_period_end
    invoice = renew(active, start)
    charge(invoice, start, first=True)
    charge(invoice, start + DAY)
    assert Subscription.objects.get(pk=active.pk).status == "cancelled"


def test_an_outage_is_retried_with_the_same_key_and_charges_once(active):
    other_child = ChildFactory(customer=active.customer)
    other = paid_subscription(client_for(active.customer), other_child, PlanFactory())
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.UNAVAILABLE)
    start = active.current_period_end
    invoice = renew(active, start)

    with pytest.raises(GatewayUnreachable):
        services.invoice_charge(invoice_id=invoice.pk, now=start, force=True)
    with pytest.raises(GatewayUnreachable):  # the task's retry
        services.invoice_charge(invoice_id=invoice.pk, now=start, force=True)
    payment = Payment.objects.get(allocations__purpose_id=invoice.number)
    assert payment.status == "created" and "503" in payment.last_error

    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.APPROVE)
    assert charge(invoice, start + timedelta(minutes=5)) == "skipped"  # leased to the running attempt
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True) == "charged"
    completed(Payment.objects.get(pk=payment.pk))

    assert Payment.objects.filter(allocations__purpose_id=invoice.number).count() == 1  # the same payment
    assert SandboxCharge.objects.filter(payment_public_id=payment.public_id).count() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    # The customer's other subscription renews on its own.
    other_invoice = renew(other, other.current_period_end)
    assert charge(other_invoice, other.current_period_end, first=True) == "charged"


def test_without_a_saved_method_a_payment_link_is_sent(active):
    SavedPaymentMethod.objects.all().delete()
    start = active.current_period_end
    before = last_seq()
    invoice = renew(active, start)

    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True) == "link"

    invoice.refresh_from_db()
    assert invoice.payment_url.startswith("http") and "/pay/sandbox/" in invoice.payment_url
    assert invoice.attempts == 1 and invoice.status == "open"
    failed = event_types(before, "invoice.payment_failed")
    assert failed == ["invoice.payment_failed"]
    data = OutboxEvent.objects.get(type="invoice.payment_failed").data
    assert data["payment_url"] == invoice.payment_url and data["error"] == "no saved payment method"


def test_a_method_deleted_after_the_charge_was_opened_fails_that_attempt(active):
    start = active.current_period_end
    invoice = renew(active, start)
    method = SavedPaymentMethod.objects.get()
    policy.payment_open(
        customer_id=active.customer_id,
        purpose="subscription",
        item_ids=[invoice.number],
        gateway="sandbox",
        saved_method_id=method.pk,
    )
    method.delete()  # the customer deletes it meanwhile: the payment opened for it has no method
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True) == "link"
    payment = Payment.objects.get(allocations__purpose_id=invoice.number)  # reused as the link's
    assert (
        payment.status == "pending" and payment.checkout_url == Invoice.objects.get(pk=invoice.pk).payment_url
    )
    assert not SandboxCharge.objects.filter(
        payment_public_id=payment.public_id, method__isnull=False
    ).exists()


def test_a_skipped_period_is_neither_charged_nor_boxed(active):
    services.subscription_skip(subscription_id=active.pk)
    end = active.current_period_end
    assert services.subscription_renew(subscription_id=active.pk, now=end) is None
    active.refresh_from_db()
    assert active.current_period_start == end and not active.skip_next
    assert active.invoices.count() == 1 and active.toyboxes.count() == 1


def test_cancel_at_period_end_ends_it_at_renewal(active):
    services.subscription_cancel(subscription_id=active.pk, at_period_end=True)
    assert services.subscription_renew(subscription_id=active.pk, now=active.current_period_end) is None
    assert Subscription.objects.get(pk=active.pk).status == "cancelled"
    assert active.invoices.count() == 1


def test_the_renew_command_lists_with_dry_run_and_renews(active):
    Subscription.objects.filter(pk=active.pk).update(next_renewal_at=timezone.now() - DAY)
    out = StringIO()
    call_command("subscriptions", "renew", "--dry-run", stdout=out)
    assert "1 subscriptions to renew" in out.getvalue()
    assert Invoice.objects.count() == 1  # nothing changed
    out = StringIO()
    call_command("subscriptions", "renew", stdout=out)
    assert "renewed 1 subscriptions" in out.getvalue() and "1 charged" in out.getvalue()


# --- found in review: stale periods, the renewal window, outages, redelivery ------------------
def test_a_first_invoice_paid_late_starts_its_period_when_paid():
    child = ChildFactory()
    client = client_for(child.customer)
    long_ago = timezone.now() - 90 * DAY
    subscription = services.subscription_create(
        customer_id=child.customer_id, child_id=child.pk, plan_id=PlanFactory().pk, now=long_ago
    )
    completed(sandbox_pay(batch(client, subscription.public_id).json()["id"]))
    subscription.refresh_from_db()
    assert subscription.current_period_start > timezone.now() - DAY  # from the payment, not 90 days ago
    assert services.subscription_renew(subscription_id=subscription.pk) is None  # nothing due
    assert services.renewals_dispatch() == (0, 0)


def test_a_renewal_run_late_charges_one_period_starting_now(active):
    late = active.current_period_end + 40 * DAY  # beat stopped for weeks
    invoice = renew(active, late)
    assert invoice.period_start == late
    assert charge(invoice, late, first=True) == "charged"
    assert Subscription.objects.get(pk=active.pk).next_renewal_at > late + 25 * DAY


def test_resuming_a_subscription_that_owes_an_invoice_charges_it_again(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.DECLINE)
    start = active.current_period_end
    invoice = renew(active, start)
    charge(invoice, start, first=True)  # declined: past_due
    services.subscription_pause(subscription_id=active.pk)
    assert Invoice.objects.get(pk=invoice.pk).next_attempt_at is None  # no attempts while paused
    assert services.renewals_dispatch(now=start + 10 * DAY) == (0, 0)

    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.APPROVE)
    resumed = services.subscription_resume(subscription_id=active.pk, now=start + DAY)
    assert resumed.status == "past_due"
    assert charge(invoice, start + DAY) == "charged"
    assert Subscription.objects.get(pk=active.pk).status == "active"


def test_resuming_after_the_owed_period_is_over_voids_it_and_starts_anew(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.DECLINE)
    start = active.current_period_end
    invoice = renew(active, start)
    charge(invoice, start, first=True)
    services.subscription_pause(subscription_id=active.pk)
    resumed = services.subscription_resume(subscription_id=active.pk, now=start + 60 * DAY)
    assert resumed.status == "active" and resumed.next_renewal_at == start + 60 * DAY
    assert Invoice.objects.get(pk=invoice.pk).status == "void"  # no charge for the time paused


@pytest.mark.parametrize("action", ["cancel", "skip"])
def test_cancel_or_skip_during_the_renewal_window_withdraws_the_unpaid_invoice(active, action):
    start = active.current_period_end
    invoice = renew(active, start)  # renewed; its charge task not run yet
    if action == "cancel":
        services.subscription_cancel(subscription_id=active.pk, at_period_end=True)
    else:
        services.subscription_skip(subscription_id=active.pk)

    assert Invoice.objects.get(pk=invoice.pk).status == "void"
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0) == "skipped"
    active.refresh_from_db()
    if action == "cancel":
        assert active.status == "cancelled"
    else:
        assert active.status == "active" and active.current_period_start == start and not active.skip_next
    assert not SandboxCharge.objects.filter(
        payment_public_id__in=Payment.objects.filter(allocations__purpose_id=invoice.number).values(
            "public_id"
        )
    ).exists()


def test_a_redelivered_renewal_task_does_not_charge_ahead_of_dunning(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.DECLINE)
    start = active.current_period_end
    invoice = renew(active, start)
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0) == "failed"
    # The same message again (the worker died before acknowledging it): attempt 0 is over.
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0) == "skipped"
    assert Invoice.objects.get(pk=invoice.pk).attempts == 1
    assert SandboxCharge.objects.filter(status="failed").count() == 1


def test_an_outage_through_every_retry_is_sent_again_by_key_then_held_for_staff(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.UNAVAILABLE)
    start = active.current_period_end
    invoice = renew(active, start)
    with pytest.raises(GatewayUnreachable):
        services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0)
    services.invoice_charge_postponed(invoice_id=invoice.pk, error="503", now=start)  # the task's last retry
    invoice.refresh_from_db()
    assert invoice.attempts == 0 and invoice.next_attempt_at == start + timedelta(minutes=30)
    assert Subscription.objects.get(pk=active.pk).status == "active"  # an outage is not a decline

    # A day later the gateway may have forgotten the key: not sent again, held for staff.
    payment = payment_of(invoice)
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - DAY)
    assert services.invoice_charge(invoice_id=invoice.pk, now=start + DAY) == "held"
    invoice.refresh_from_db()
    assert invoice.next_attempt_at is None and "outcome is unknown" in invoice.last_error
    assert "outcome unknown" in Payment.objects.get(pk=payment.pk).flagged_reason
    failed = OutboxEvent.objects.filter(type="payment.failed", aggregate_id=payment.public_id).get()
    subscriptions_on_payment_failed(Event.from_envelope(failed.envelope))  # not counted as a decline
    assert Invoice.objects.get(pk=invoice.pk).attempts == 0
    assert not SandboxCharge.objects.filter(payment_public_id=payment.public_id).exists()  # never sent


def test_an_invoice_paid_meanwhile_is_not_charged(active):
    start = active.current_period_end
    invoice = renew(active, start)
    link = policy.payment_open(
        customer_id=active.customer_id, purpose="subscription", item_ids=[invoice.number]
    )
    services_payments.payment_start_checkout(
        payment_id=link.pk, return_url="", description="", customer_email=""
    )
    sandbox_pay(link.public_id)  # paid by the link; its payment.completed not applied yet
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0) == "skipped"


def test_the_card_used_last_is_charged_before_one_never_used(active):
    used = SavedPaymentMethod.objects.get()
    SavedPaymentMethod.objects.filter(pk=used.pk).update(last_used_at=timezone.now())
    fresh = SavedPaymentMethod.objects.create(customer=active.customer, gateway="sandbox", token="sbxm_new")
    assert method_for_charge(active.customer_id) == used
    assert fresh.last_used_at is None


def _held(active):
    """An invoice whose renewal charge was lost in an outage and is now held for staff."""
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.UNAVAILABLE)
    start = active.current_period_end
    invoice = renew(active, start)
    with pytest.raises(GatewayUnreachable):
        services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0)
    payment = payment_of(invoice)
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - DAY)
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0) == "held"
    return invoice, start, payment


def test_a_held_invoice_stays_held_through_pause_resume_and_redelivery_until_staff_retry(active):
    invoice, start, lost = _held(active)
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.APPROVE)
    services.subscription_pause(subscription_id=active.pk)
    services.subscription_resume(subscription_id=active.pk, now=start + DAY)
    assert Invoice.objects.get(pk=invoice.pk).next_attempt_at is None  # not re-armed
    assert services.invoice_charge(invoice_id=invoice.pk, now=start + DAY, force=True, attempt=0) == "skipped"
    assert services.renewals_dispatch(now=start + 2 * DAY) == (0, 0)
    assert payment_of(invoice).pk == lost.pk  # no second key

    # Staff looked it up at the gateway (nothing was charged) and retry it from the admin.
    outcome = services.invoice_charge(
        invoice_id=invoice.pk, now=start + DAY, force=True, attempt=0, release_hold=True
    )
    assert outcome == "charged" and Invoice.objects.get(pk=invoice.pk).held_at is None


def test_an_overdue_payment_whose_charge_may_have_been_sent_is_not_expired_but_held(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.UNAVAILABLE)
    start = active.current_period_end
    invoice = renew(active, start)
    with pytest.raises(GatewayUnreachable):
        services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0)
    services.invoice_charge_postponed(invoice_id=invoice.pk, error="503", now=start)
    sent = payment_of(invoice)
    Payment.objects.filter(pk=sent.pk).update(deadline=timezone.now() - timedelta(minutes=1))

    assert reconciliation.payments_expire_overdue() == 0  # not expired: failed as unknown, flagged
    sent.refresh_from_db()
    assert sent.status == "failed" and sent.last_error.startswith("the charge's outcome is unknown")
    failed = OutboxEvent.objects.get(type="payment.failed", aggregate_id=sent.public_id)
    subscriptions_on_payment_failed(Event.from_envelope(failed.envelope))
    invoice.refresh_from_db()
    assert invoice.held_at is not None and invoice.attempts == 0
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.APPROVE)
    assert services.invoice_charge(invoice_id=invoice.pk, now=start + DAY) == "skipped"


def test_the_dispatchers_attempt_number_keeps_a_retry_from_charging_ahead_of_dunning(active):
    SandboxMethod.objects.update(behaviour=SandboxMethod.Behaviour.DECLINE)
    start = active.current_period_end
    invoice = renew(active, start)
    assert services.invoice_charge(invoice_id=invoice.pk, now=start, force=True, attempt=0) == "failed"
    due = start + DAY
    assert services.invoice_charge(invoice_id=invoice.pk, now=due, attempt=1) == "failed"
    # That task's retry (forced, attempt 1) after the decline was counted: nothing more.
    assert services.invoice_charge(invoice_id=invoice.pk, now=due, force=True, attempt=1) == "skipped"
    assert Invoice.objects.get(pk=invoice.pk).attempts == 2
