"""Children, plans and subscriptions through the API: bad input refused with nothing created,
own objects only, and the lifecycle actions (cancel, pause, resume, skip)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from subscriptions import services
from subscriptions.models import Child, Invoice, Subscription
from tests.factories import StaffFactory, UserFactory
from tests.subscriptions.factories import ChildFactory, PlanFactory, born_months_ago
from tests.subscriptions.helpers import client_for, event_types, last_seq, paid_subscription, subscribe

pytestmark = pytest.mark.django_db


def test_a_child_is_created_with_clean_interests_and_listed_only_for_its_parent():
    parent, other = UserFactory(), UserFactory()
    response = client_for(parent).post(
        "/api/children",
        {
            "name": "Mia",
            "birth_date": "2021-03-14",
            "interests": ["Music", "music ", "ANIMALS"],
            "notes": "no latex",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="child-1",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["interests"] == ["music", "animals"]
    again = client_for(parent).post(
        "/api/children",
        {
            "name": "Mia",
            "birth_date": "2021-03-14",
            "interests": ["Music", "music ", "ANIMALS"],
            "notes": "no latex",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="child-1",
    )
    assert again.json()["id"] == response.json()["id"] and Child.objects.count() == 1  # a retry, not a twin
    assert [c["name"] for c in client_for(parent).get("/api/children").json()["results"]] == ["Mia"]
    assert client_for(other).get("/api/children").json()["results"] == []
    assert client_for(other).get(f"/api/children/{response.json()['id']}").status_code == 404
    assert (
        client_for(other)
        .patch(f"/api/children/{response.json()['id']}", {"name": "X"}, format="json")
        .status_code
        == 404
    )


def test_a_birth_date_in_the_future_is_refused():
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    response = client_for(UserFactory()).post(
        "/api/children", {"name": "Soon", "birth_date": tomorrow}, format="json", HTTP_IDEMPOTENCY_KEY="c"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "birth_date_in_future"
    assert not Child.objects.exists()


def test_patch_changes_only_what_is_sent_and_delete_refuses_a_subscribed_child():
    child = ChildFactory(notes="wool allergy")
    client = client_for(child.customer)
    response = client.patch(f"/api/children/{child.pk}", {"interests": ["Art"]}, format="json")
    assert response.status_code == 200 and response.json()["interests"] == ["art"]
    assert response.json()["notes"] == "wool allergy"
    subscribe(client, child, PlanFactory())
    refused = client.delete(f"/api/children/{child.pk}")
    assert refused.status_code == 422 and refused.json()["code"] == "child_has_subscriptions"
    alone = ChildFactory(customer=child.customer)
    assert client.delete(f"/api/children/{alone.pk}").status_code == 204


def test_plans_are_public_and_only_the_active_ones():
    PlanFactory(name="Open"), PlanFactory(name="Closed", is_active=False)
    response = client_for(UserFactory()).get("/api/plans")
    assert [p["name"] for p in response.json()["results"]] == ["Open"]
    assert response.json()["results"][0]["price"] == "30.00"


def test_subscribing_opens_the_first_invoice_and_publishes_both():
    child, plan = ChildFactory(), PlanFactory(price="29.00")
    before = last_seq()
    response = subscribe(client_for(child.customer), child, plan)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending_payment"
    assert body["open_invoice"]["amount"] == "29.00" and body["open_invoice"]["status"] == "open"
    assert event_types(before) == ["subscription.created", "invoice.created"]


@pytest.mark.parametrize(
    ("age_months", "plan_ages", "code"),
    [(6, (12, 48), "child_too_young"), (60, (12, 48), "child_too_old")],
)
def test_a_child_outside_the_plans_ages_is_refused(age_months, plan_ages, code):
    child = ChildFactory(birth_date=born_months_ago(age_months))
    plan = PlanFactory(age_min_months=plan_ages[0], age_max_months=plan_ages[1])
    response = subscribe(client_for(child.customer), child, plan)
    assert response.status_code == 422 and response.json()["code"] == code
    assert not Subscription.objects.exists() and not Invoice.objects.exists()


def test_an_inactive_plan_and_a_second_live_subscription_are_refused():
    child = ChildFactory()
    client = client_for(child.customer)
    refused = subscribe(client, child, PlanFactory(is_active=False))
    assert refused.status_code == 422 and refused.json()["code"] == "plan_inactive"
    plan = PlanFactory()
    assert subscribe(client, child, plan, key="one").status_code == 201
    twin = subscribe(client, child, plan, key="two")
    assert twin.status_code == 422 and twin.json()["code"] == "already_subscribed"
    assert Subscription.objects.count() == 1 and Invoice.objects.count() == 1


def test_another_customers_child_cannot_be_subscribed():
    child = ChildFactory()
    response = subscribe(client_for(UserFactory()), child, PlanFactory())
    assert response.status_code == 404
    assert not Subscription.objects.exists()


def test_the_database_allows_one_live_subscription_per_child_and_plan():
    from django.db import IntegrityError

    child, plan = ChildFactory(), PlanFactory()
    Subscription.objects.create(customer=child.customer, child=child, plan=plan)
    Subscription.objects.create(customer=child.customer, child=child, plan=plan, status="cancelled")
    with pytest.raises(IntegrityError):
        Subscription.objects.create(customer=child.customer, child=child, plan=plan, status="paused")


def test_only_the_owner_and_staff_see_a_subscription_and_act_on_it():
    child = ChildFactory()
    subscription_id = subscribe(client_for(child.customer), child, PlanFactory()).json()["id"]
    stranger = client_for(UserFactory())
    assert stranger.get(f"/api/subscriptions/{subscription_id}").status_code == 404
    assert stranger.post(f"/api/subscriptions/{subscription_id}/cancel").status_code == 404
    assert client_for(StaffFactory()).get(f"/api/subscriptions/{subscription_id}").status_code == 200
    assert stranger.get("/api/subscriptions").json()["results"] == []
    assert stranger.get("/api/invoices").json()["results"] == []


def test_cancelling_an_unpaid_subscription_voids_its_invoice():
    child = ChildFactory()
    client = client_for(child.customer)
    subscription_id = subscribe(client, child, PlanFactory()).json()["id"]
    response = client.post(f"/api/subscriptions/{subscription_id}/cancel", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert Invoice.objects.get().status == "void"


def test_a_paid_subscription_is_cancelled_at_the_periods_end_by_default_or_now_if_asked():
    child = ChildFactory()
    client = client_for(child.customer)
    subscription = paid_subscription(client, child, PlanFactory())
    url = f"/api/subscriptions/{subscription.public_id}/cancel"
    at_end = client.post(url, {}, format="json").json()
    assert at_end["status"] == "active" and at_end["cancel_at_period_end"] is True
    now = client.post(url, {"at_period_end": False}, format="json").json()
    assert now["status"] == "cancelled"


def test_pause_resume_and_skip():
    child = ChildFactory()
    client = client_for(child.customer)
    subscription = paid_subscription(client, child, PlanFactory())
    base = f"/api/subscriptions/{subscription.public_id}"
    before = last_seq()
    skip = client.post(f"{base}/skip")
    assert skip.status_code == 200 and skip.json()["skip_next"] is True
    assert client.post(f"{base}/pause").json()["status"] == "paused"
    assert client.post(f"{base}/pause").json()["status"] == "paused"  # twice: nothing more
    again = client.post(f"{base}/resume")
    assert again.json()["status"] == "active"
    assert again.json()["next_renewal_at"] is not None
    refused = client.post(f"{base}/resume")
    assert refused.status_code == 422 and refused.json()["code"] == "not_paused"
    assert event_types(before) == ["subscription.paused", "subscription.resumed"]


def test_each_action_answers_only_post():
    child = ChildFactory()
    client = client_for(child.customer)
    subscription_id = subscribe(client, child, PlanFactory()).json()["id"]
    for action in ("cancel", "pause", "resume", "skip"):
        assert client.get(f"/api/subscriptions/{subscription_id}/{action}").status_code == 405


def test_a_subscription_never_paid_is_cancelled_after_a_week(settings):
    child = ChildFactory()
    subscription_id = subscribe(client_for(child.customer), child, PlanFactory()).json()["id"]
    subscription = Subscription.objects.get(public_id=subscription_id)
    assert services.subscriptions_expire_unpaid(now=timezone.now() + timedelta(days=6)) == 0
    assert services.subscriptions_expire_unpaid(now=timezone.now() + timedelta(days=8)) == 1
    subscription.refresh_from_db()
    assert subscription.status == "cancelled" and subscription.status_note == "unpaid"
    assert Invoice.objects.get().status == "void"
