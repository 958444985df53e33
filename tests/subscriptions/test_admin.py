"""The staff admin for subscriptions: every page renders read-only, each button goes through the
services (events published, status rules kept, refusals shown), charging a saved card asks
first, and invoices export to CSV."""

import re

import pytest
from django.contrib.auth.models import Permission

from core.models import OutboxEvent
from payments.models import Payment, SandboxMethod
from subscriptions import services
from subscriptions.models import Invoice, Subscription, Toybox
from subscriptions.resources import InvoiceResource
from tests.conftest import wait_for
from tests.factories import StaffFactory, SuperuserFactory
from tests.orders.test_admin import export_csv
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory
from tests.subscriptions.helpers import client_for, paid_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(SuperuserFactory())
    return client


@pytest.fixture
def subscription():
    child = ChildFactory()
    ToyFactory(sku="ONLY-ONE", stock_on_hand=1)
    return paid_subscription(client_for(child.customer), child, PlanFactory(toys_per_box=2, price="37.00"))


def page(client, model: str, pk: int) -> str:
    response = client.get(f"/admin/subscriptions/{model}/{pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def buttons(html: str) -> set[str]:
    return set(re.findall(r"/admin/subscriptions/\w+/\d+/actions/(\w+)/", html))


def press(client, model: str, pk: int, action: str, data=None) -> str:
    url = f"/admin/subscriptions/{model}/{pk}/actions/{action}/"
    return client.post(url, data or {}, follow=True).content.decode()


def test_every_page_renders_read_only_with_amounts_and_links(admin_client, subscription):
    toybox = subscription.toyboxes.get()
    invoice = subscription.invoices.get()
    for model, pk in [
        ("child", subscription.child_id),
        ("plan", subscription.plan_id),
        ("subscription", subscription.pk),
        ("invoice", invoice.pk),
        ("toybox", toybox.pk),
    ]:
        assert admin_client.get(f"/admin/subscriptions/{model}/").status_code == 200
        html = page(admin_client, model, pk)
        assert ('name="_save"' in html) == (model in ("child", "plan")), model  # only those are edited
    html = page(admin_client, "subscription", subscription.pk)
    assert (
        invoice.number in html and toybox.public_id in html and "37.00 USD" in html and "37.000" not in html
    )
    assert f"/admin/accounts/user/{subscription.customer_id}/change/" in html
    assert buttons(html) == {"pause", "skip_next_box", "cancel_at_end", "cancel_now"}
    listing = admin_client.get("/admin/subscriptions/invoice/?status__exact=paid").content.decode()
    assert invoice.number in listing and "37.00 USD" in listing and invoice.payment_id in listing
    assert "37.00 USD" in admin_client.get("/admin/subscriptions/plan/").content.decode()


def test_a_short_box_is_rebuilt_then_shipped_with_its_tracking_number(admin_client, subscription):
    toybox = services.toybox_build(toybox_id=subscription.toyboxes.get().pk)
    assert toybox.status == "short"
    html = page(admin_client, "toybox", toybox.pk)
    assert buttons(html) == {"rebuild"}
    assert "short" in admin_client.get("/admin/subscriptions/toybox/?status__exact=short").content.decode()

    ToyFactory(sku="ARRIVED")
    assert f"Toybox {toybox.public_id} rebuilt: ready." in press(admin_client, "toybox", toybox.pk, "rebuild")
    assert Toybox.objects.get(pk=toybox.pk).status == "ready"
    refused = press(admin_client, "toybox", toybox.pk, "rebuild")  # posted again: the service says no
    assert "Only a short box can be rebuilt; this one is ready." in refused

    asked = admin_client.get(
        f"/admin/subscriptions/toybox/{toybox.pk}/actions/mark_shipped/"
    ).content.decode()
    assert 'name="tracking_number"' in asked and Toybox.objects.get(pk=toybox.pk).status == "ready"
    press(admin_client, "toybox", toybox.pk, "mark_shipped", {"tracking_number": "TRK-9"})
    assert Toybox.objects.get(pk=toybox.pk).tracking_number == "TRK-9"
    assert OutboxEvent.objects.filter(type="toybox.shipped").count() == 1
    press(admin_client, "toybox", toybox.pk, "mark_delivered")
    assert Toybox.objects.get(pk=toybox.pk).status == "delivered"


def test_short_boxes_are_rebuilt_in_bulk(admin_client, subscription):
    toybox = services.toybox_build(toybox_id=subscription.toyboxes.get().pk)
    ToyFactory(sku="ARRIVED")
    response = admin_client.post(
        "/admin/subscriptions/toybox/",
        {"action": "rebuild_selected", "_selected_action": [toybox.pk]},
        follow=True,
    )
    assert "1 rebuilt" in response.content.decode()
    assert Toybox.objects.get(pk=toybox.pk).status == "ready"


def test_pause_resume_skip_and_cancel_go_through_the_services(admin_client, subscription):
    pk = subscription.pk
    press(admin_client, "subscription", pk, "pause")
    assert Subscription.objects.get(pk=pk).status == "paused"
    assert OutboxEvent.objects.filter(type="subscription.paused").count() == 1
    assert buttons(page(admin_client, "subscription", pk)) == {"resume", "cancel_now"}
    asked = admin_client.get(f"/admin/subscriptions/subscription/{pk}/actions/resume/").content.decode()
    assert "Yes, resume it" in asked and "37.00 USD" in asked  # it may charge: it asks first
    assert Subscription.objects.get(pk=pk).status == "paused"
    press(admin_client, "subscription", pk, "resume")
    assert Subscription.objects.get(pk=pk).status == "active"
    press(admin_client, "subscription", pk, "skip_next_box")
    assert Subscription.objects.get(pk=pk).skip_next

    asked = admin_client.get(
        f"/admin/subscriptions/subscription/{pk}/actions/cancel_at_end/"
    ).content.decode()
    assert "Yes, cancel it" in asked and not Subscription.objects.get(pk=pk).cancel_at_period_end
    press(admin_client, "subscription", pk, "cancel_at_end", {"reason": "moving abroad"})
    assert Subscription.objects.get(pk=pk).cancel_at_period_end
    press(admin_client, "subscription", pk, "cancel_now")
    assert Subscription.objects.get(pk=pk).status == "cancelled"

    refused = press(admin_client, "subscription", pk, "resume")
    assert "Only a paused subscription can be resumed; this one is cancelled." in refused


def test_staff_without_the_change_permission_see_no_button_and_are_refused(client, subscription):
    viewer = StaffFactory()
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_subscription", "view_invoice"])
    )
    client.force_login(viewer)
    invoice = subscription.invoices.get()

    assert not buttons(page(client, "subscription", subscription.pk))
    assert (
        client.post(f"/admin/subscriptions/subscription/{subscription.pk}/actions/pause/").status_code == 403
    )
    assert client.get(f"/admin/subscriptions/invoice/{invoice.pk}/actions/charge_now/").status_code == 403
    assert Subscription.objects.get(pk=subscription.pk).status == "active"


def test_the_csv_export_has_the_filtered_invoices(admin_client, subscription):
    paid = subscription.invoices.get()
    renewal = services.subscription_renew(
        subscription_id=subscription.pk, now=subscription.current_period_end
    )

    rows = export_csv(admin_client, "/admin/subscriptions/invoice/", InvoiceResource, "?status__exact=paid")

    assert [row["number"] for row in rows] == [paid.number]
    row = rows[0]
    assert (row["customer_email"], row["amount"], row["currency"], row["status"], row["payment_id"]) == (
        subscription.customer.email,
        "37.00",
        "USD",
        "paid",
        paid.payment_id,
    )
    assert row["subscription_id"] == subscription.public_id and row["plan"] == subscription.plan.name
    everything = export_csv(admin_client, "/admin/subscriptions/invoice/", InvoiceResource)
    assert {r["number"] for r in everything} == {paid.number, renewal.number}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_charge_now_asks_first_then_a_worker_charges_the_saved_card(
    celery_worker, admin_client, subscription
):
    # The worker first: it purges the queues, which would drop the relay kick of the subscription's events.
    card = SandboxMethod.objects.get()
    card.behaviour = SandboxMethod.Behaviour.DECLINE
    card.save()
    invoice = services.subscription_renew(
        subscription_id=subscription.pk, now=subscription.current_period_end
    )
    wait_for(
        lambda: Invoice.objects.get(pk=invoice.pk).attempts == 1, timeout=60, what="the renewal declined"
    )
    card.behaviour = SandboxMethod.Behaviour.APPROVE  # the customer topped up their card
    card.save()
    payments_before = Payment.objects.count()
    assert buttons(page(admin_client, "invoice", invoice.pk)) == {"charge_now"}

    asked = admin_client.get(
        f"/admin/subscriptions/invoice/{invoice.pk}/actions/charge_now/"
    ).content.decode()
    assert "Yes, charge it" in asked and "37.00 USD" in asked
    assert Payment.objects.count() == payments_before  # nothing charged by looking

    done = press(admin_client, "invoice", invoice.pk, "charge_now")

    assert "The charge is sent to a worker" in done
    wait_for(lambda: Invoice.objects.get(pk=invoice.pk).status == "paid", timeout=60, what="the invoice paid")
    assert Payment.objects.count() == payments_before + 1
    assert Subscription.objects.get(pk=subscription.pk).status == "active"
    refused = press(admin_client, "invoice", invoice.pk, "charge_now")
    assert f"Invoice {invoice.number} is paid: nothing to charge." in refused


def test_nothing_is_added_or_deleted_by_hand(admin_client, subscription):
    assert admin_client.get("/admin/subscriptions/subscription/add/").status_code == 403
    assert admin_client.get("/admin/subscriptions/toybox/add/").status_code == 403
    invoice = subscription.invoices.get()
    assert admin_client.get(f"/admin/subscriptions/invoice/{invoice.pk}/delete/").status_code == 403


def test_a_sandbox_card_can_be_set_to_decline_in_the_admin(admin_client, subscription):
    card = SandboxMethod.objects.get()
    assert admin_client.get("/admin/payments/sandboxmethod/").status_code == 200
    admin_client.post(
        "/admin/payments/sandboxmethod/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(card.pk),
            "form-0-behaviour": "decline",
            "_save": "Save",
        },
    )
    card.refresh_from_db()
    assert card.behaviour == "decline"
