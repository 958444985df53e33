"""The staff admin for subscriptions: every page renders, and each action goes through the
services (events published, status rules kept)."""

import pytest

from core.models import OutboxEvent
from subscriptions import services
from subscriptions.models import Subscription, Toybox
from tests.factories import SuperuserFactory
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
    return paid_subscription(client_for(child.customer), child, PlanFactory(toys_per_box=2))


def act(admin_client, model: str, action: str, selected, **extra) -> str:
    return admin_client.post(
        f"/admin/subscriptions/{model}/",
        {"action": action, "_selected_action": [obj.pk for obj in selected], **extra},
        follow=True,
    ).content.decode()


def test_every_page_renders(admin_client, subscription):
    toybox = subscription.toyboxes.get()
    for model, pk in [
        ("child", subscription.child_id),
        ("plan", subscription.plan_id),
        ("subscription", subscription.pk),
        ("invoice", subscription.invoices.get().pk),
        ("toybox", toybox.pk),
    ]:
        assert admin_client.get(f"/admin/subscriptions/{model}/").status_code == 200
        assert admin_client.get(f"/admin/subscriptions/{model}/{pk}/change/").status_code == 200
    page = admin_client.get(f"/admin/subscriptions/subscription/{subscription.pk}/change/").content.decode()
    assert subscription.invoices.get().number in page and toybox.public_id in page


def test_a_short_box_is_rebuilt_then_shipped_with_its_tracking_number(admin_client, subscription):
    toybox = services.toybox_build(toybox_id=subscription.toyboxes.get().pk)
    assert toybox.status == "short"
    ToyFactory(sku="ARRIVED")
    assert "1 rebuilt" in act(admin_client, "toybox", "rebuild", [toybox])
    assert Toybox.objects.get(pk=toybox.pk).status == "ready"

    refused = act(admin_client, "toybox", "mark_shipped", [toybox], tracking_number="")
    assert "tracking number is needed" in refused
    act(admin_client, "toybox", "mark_shipped", [toybox], tracking_number="TRK-9")
    assert Toybox.objects.get(pk=toybox.pk).tracking_number == "TRK-9"
    assert OutboxEvent.objects.filter(type="toybox.shipped").count() == 1


def test_pause_and_cancel_go_through_the_services(admin_client, subscription):
    act(admin_client, "subscription", "pause", [subscription])
    assert Subscription.objects.get(pk=subscription.pk).status == "paused"
    assert OutboxEvent.objects.filter(type="subscription.paused").count() == 1
    act(admin_client, "subscription", "cancel_now", [subscription])
    assert Subscription.objects.get(pk=subscription.pk).status == "cancelled"
    page = act(admin_client, "subscription", "resume", [subscription])
    assert "Only a paused subscription can be resumed" in page


def test_retrying_a_charge_sends_the_attempt_to_a_worker(
    admin_client, subscription, celery_app_without_worker
):
    invoice = services.subscription_renew(
        subscription_id=subscription.pk, now=subscription.current_period_end
    )
    page = act(admin_client, "invoice", "charge_now", [invoice])
    assert "1 charges sent" in page


def test_nothing_is_added_or_deleted_by_hand(admin_client, subscription):
    assert admin_client.get("/admin/subscriptions/subscription/add/").status_code == 403
    assert admin_client.get("/admin/subscriptions/toybox/add/").status_code == 403
    invoice = subscription.invoices.get()
    assert admin_client.get(f"/admin/subscriptions/invoice/{invoice.pk}/delete/").status_code == 403


def test_a_sandbox_card_can_be_set_to_decline_in_the_admin(admin_client, subscription):
    from payments.models import SandboxMethod

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
