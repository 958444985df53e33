"""The payments admin: lists staff read, buttons that call the payments services, CSV exports."""

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from payments import policy, services
from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import Payment, Refund, SandboxCharge, WebhookEvent
from payments.registry import gateway_for
from tests.conftest import wait_for
from tests.factories import GadgetFactory, StaffFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, order_of
from tests.payments.test_sandbox_e2e import start_sandbox_payment

pytestmark = pytest.mark.django_db
PAYMENTS = "/admin/payments/payment/"


def staff_with(*codenames: str) -> User:
    """A staff member with exactly these payments permissions (no superuser shortcut)."""
    staff = StaffFactory()
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="payments", codename__in=codenames)
    )
    return User.objects.get(pk=staff.pk)  # permissions are cached per instance


@pytest.fixture
def cashier(client):
    """Staff who may refund and re-verify: they can change payments."""
    client.force_login(
        staff_with(
            "view_payment", "change_payment", "view_refund", "view_webhookevent", "change_webhookevent"
        )
    )
    return client


def paid_payment() -> Payment:
    """A 75.00 USD sandbox payment the customer paid, as the gateway's API confirmed."""
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")
    return services.payment_verify(payment_id=payment.pk)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def action_url(payment: Payment, name: str) -> str:
    return f"{PAYMENTS}{payment.pk}/actions/{name}/"


def refund_page_key(page) -> str:
    return re.search(r'name="key" value="([0-9a-f-]+)"', page.content.decode()).group(1)


# --- lists -----------------------------------------------------------------------------------


def test_the_list_shows_amounts_with_their_currency_digits_and_links_to_what_is_paid(cashier):
    variant = VariantFactory(price=Decimal("1250.00"), currency="NGN")
    customer = UserFactory()
    order = order_of(checkout(client_for(customer), (variant.pk, 1)))

    page = cashier.get(PAYMENTS).content.decode()

    assert '<td class="field-amount_shown">1,250.00 NGN</td>' in page
    assert f'href="/admin/orders/order/?q={order.number}">order {order.number}</a>' in page
    assert f'href="/admin/accounts/user/{customer.pk}/change/">{customer.email}</a>' in page


def test_the_list_makes_as_many_queries_however_many_payments_and_items(cashier):
    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert cashier.get(PAYMENTS).status_code == 200
        return len(queries)

    def batch(count: int) -> Payment:
        customer = UserFactory()
        codes = [GadgetFactory(customer=customer).code for _ in range(count)]
        return policy.payment_open(
            customer_id=customer.pk, purpose="gadget", item_ids=codes, gateway="sandbox"
        )

    batch(1)
    one = list_queries()
    for count in (2, 5, 1, 3):
        batch(count)
    many = list_queries()

    assert many == one
    page = cashier.get(PAYMENTS).content.decode()
    assert "and 2 more" in page  # the 5-item payment names 3 of them


def test_the_refund_list_is_read_only_with_formatted_amounts(cashier):
    payment = paid_payment()
    refund = services.refund_reserve(
        payment_id=payment.pk, amount="25.00", reason="damaged", idempotency_key="r", requested_by_id=None
    )

    listing = cashier.get("/admin/payments/refund/?status__exact=pending").content.decode()
    page = cashier.get(f"/admin/payments/refund/{refund.pk}/change/").content.decode()

    assert "25.00 USD" in listing and payment.public_id in listing
    assert f'href="{PAYMENTS}{payment.pk}/change/"' in page
    assert 'name="_save"' not in page
    assert f"gadget {payment.allocations.get().purpose_id}" in page  # what the refund came out of


# --- a payment's page and its buttons --------------------------------------------------------


def test_a_payment_page_is_read_only_and_offers_refund_and_reverify(cashier):
    payment = paid_payment()

    page = cashier.get(f"{PAYMENTS}{payment.pk}/change/").content.decode()

    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert f'href="{action_url(payment, "refund")}"' in page
    assert "Refund…" in page
    assert f'action="{action_url(payment, "reverify")}"' in page
    assert "Re-verify with the gateway" in page
    assert '<div class="readonly">75.00 USD</div>' in page
    allocation = re.search(r'<td class="field-amount_shown">\s*<p>(.*?)</p>', page)  # the first inline
    assert allocation.group(1) == "75.00 USD"


def test_refund_asks_first_and_a_second_yes_asks_for_nothing_more(cashier, celery_app_without_worker):
    payment = paid_payment()

    confirm = cashier.get(action_url(payment, "refund"))

    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "The money goes back to" in text and "Refundable now: 75.00 USD" in text
    assert 'name="amount"' in text and 'name="reason"' in text and 'value="Yes, refund"' in text
    assert not Refund.objects.exists()  # looking changes nothing

    form = {"amount": "25.00", "reason": "damaged in transit", "key": refund_page_key(confirm)}
    done = cashier.post(action_url(payment, "refund"), form, follow=True)
    again = cashier.post(action_url(payment, "refund"), form, follow=True)  # Yes pressed twice

    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.status) == (
        Decimal("25.000"),
        "damaged in transit",
        "pending",
    )
    assert done.redirect_chain[-1][0] == f"{PAYMENTS}{payment.pk}/change/"
    assert f"Refund {refund.public_id} of 25.00 USD is reserved" in messages_of(done)[0]
    assert f"Refund {refund.public_id} of 25.00 USD is reserved" in messages_of(again)[0]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_partial_refund_from_its_button_goes_through_the_gateway(client, celery_worker):
    client.force_login(staff_with("view_payment", "change_payment"))
    payment = paid_payment()
    key = refund_page_key(client.get(action_url(payment, "refund")))

    client.post(action_url(payment, "refund"), {"amount": "25.00", "reason": "damaged", "key": key})

    wait_for(lambda: Payment.objects.get(pk=payment.pk).status == "partially_refunded", what="the refund")
    assert SandboxCharge.objects.get(reference=payment.gateway_reference).refunded_amount == Decimal("25.00")
    assert Refund.objects.get().status == "succeeded"
    page = client.get(f"{PAYMENTS}{payment.pk}/change/").content.decode()
    assert "Refund…" in page  # 50.00 USD is left


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("80.00", "At most 75.00 USD can be refunded."),
        ("0", "A refund is more than zero."),
        ("10.005", "10.005 has more decimals than USD allows"),
    ],
)
def test_a_refund_the_form_refuses_is_shown_on_the_form_and_changes_nothing(cashier, amount, error):
    payment = paid_payment()
    key = refund_page_key(cashier.get(action_url(payment, "refund")))

    page = cashier.post(action_url(payment, "refund"), {"amount": amount, "reason": "x", "key": key})

    assert page.status_code == 200  # the confirmation page again, with the error
    assert error in page.content.decode()
    assert not Refund.objects.exists()


def test_the_services_refusal_is_shown_and_changes_nothing(cashier):
    payment, _ = start_sandbox_payment()  # not paid: no Refund button, but a POST can still come
    assert "Refund…" not in cashier.get(f"{PAYMENTS}{payment.pk}/change/").content.decode()
    key = refund_page_key(cashier.get(action_url(payment, "refund")))

    response = cashier.post(
        action_url(payment, "refund"), {"amount": "10.00", "reason": "x", "key": key}, follow=True
    )

    assert messages_of(response) == ["Only a paid payment can be refunded; this one is pending."]
    assert not Refund.objects.exists()
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_staff_who_cannot_change_payments_see_no_buttons_and_cannot_press_them(client):
    payment = paid_payment()
    client.force_login(staff_with("view_payment"))

    page = client.get(f"{PAYMENTS}{payment.pk}/change/")

    assert page.status_code == 200
    assert "Refund…" not in page.content.decode() and "Re-verify" not in page.content.decode()
    assert 'value="refund_in_full"' not in client.get(PAYMENTS).content.decode()
    assert client.get(action_url(payment, "refund")).status_code == 403
    form = {"amount": "5.00", "reason": "x", "key": "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}
    assert client.post(action_url(payment, "refund"), form).status_code == 403
    assert client.post(action_url(payment, "reverify")).status_code == 403
    assert not Refund.objects.exists()


def test_reverify_asks_the_gateway_and_shows_its_answer(cashier):
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")

    assert cashier.get(action_url(payment, "reverify")).status_code == 405  # a POST, never a GET
    response = cashier.post(action_url(payment, "reverify"), follow=True)

    assert messages_of(response) == ["sandbox answered; the payment is succeeded."]
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert Payment.objects.get(pk=payment.pk).ledger.filter(source="verify").exists()


def test_reverify_shows_the_gateways_refusal(cashier):
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).delete()  # unknown to the gateway

    response = cashier.post(action_url(payment, "reverify"), follow=True)

    assert messages_of(response) == [f"The gateway refused: sandbox: no charge {payment.gateway_reference}"]
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_a_flag_is_resolved_with_a_note_the_ledger_keeps_and_a_new_mismatch_flags_again(cashier):
    payment = paid_payment()
    services.payment_flag(payment, "gateway reports 70.00 USD paid")
    page = cashier.get(f"{PAYMENTS}{payment.pk}/change/").content.decode()
    assert 'data-tool-name="resolve_flag"' in page

    asked = cashier.get(action_url(payment, "resolve_flag")).content.decode()
    assert "Flagged for: gateway reports 70.00 USD paid" in asked
    assert Payment.objects.get(pk=payment.pk).flagged_reason  # asking changes nothing
    assert cashier.post(action_url(payment, "resolve_flag"), {"note": ""}).status_code == 200  # note needed
    response = cashier.post(
        action_url(payment, "resolve_flag"), {"note": "refunded 5.00 by hand"}, follow=True
    )

    assert messages_of(response) == ["The flag is resolved; the ledger keeps what it was and your note."]
    payment.refresh_from_db()
    assert payment.flagged_reason == ""
    (entry,) = payment.ledger.filter(source="staff")
    assert "refunded 5.00 by hand" in entry.note and "gateway reports 70.00 USD paid" in entry.note
    assert (
        'data-tool-name="resolve_flag"' not in cashier.get(f"{PAYMENTS}{payment.pk}/change/").content.decode()
    )
    again = cashier.post(action_url(payment, "resolve_flag"), {"note": "twice"}, follow=True)
    assert messages_of(again) == ["This payment is not flagged."]

    services.payment_flag(payment, "refund could not be asked for")
    flagged_url = f"/admin/payments/flaggedpayment/{payment.pk}/actions/resolve_flag/"
    from_the_flagged_list = cashier.post(flagged_url, {"note": "asked by hand"}, follow=True)
    assert from_the_flagged_list.redirect_chain[-1][0] == f"{PAYMENTS}{payment.pk}/change/"
    assert messages_of(from_the_flagged_list) == [
        "The flag is resolved; the ledger keeps what it was and your note."
    ]

    payment.refresh_from_db()
    services.payment_flag(payment, "gateway reports 70.00 USD paid")
    assert Payment.objects.get(pk=payment.pk).flagged_reason == "gateway reports 70.00 USD paid"


# --- the bulk refund asks first --------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_bulk_refund_lists_what_goes_back_and_refunds_only_after_yes(client, celery_worker):
    client.force_login(staff_with("view_payment", "change_payment"))
    first, second = paid_payment(), paid_payment()
    unpaid, _ = start_sandbox_payment()
    selected = [first.pk, second.pk, unpaid.pk]

    confirm = client.post(PAYMENTS, {"action": "refund_in_full", "_selected_action": selected})

    text = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Everything left on 2 payments goes back to the customers" in text and "150.00 USD" in text
    assert "nothing: not refundable now" in text  # the unpaid one
    assert not Refund.objects.exists()

    key = re.search(r'name="key" value="([0-9a-f-]+)"', text).group(1)
    form = {"action": "refund_in_full", "_selected_action": selected, "post": "yes", "key": key}
    no_reason = client.post(PAYMENTS, form)
    assert "This field is required." in no_reason.content.decode() and not Refund.objects.exists()
    done = client.post(PAYMENTS, form | {"reason": "event cancelled"}, follow=True)

    assert "2 refunds reserved; the gateways are asked now." in messages_of(done)
    for payment in (first, second):
        wait_for(lambda p=payment: Payment.objects.get(pk=p.pk).status == "refunded", what="the refunds")
    assert Payment.objects.get(pk=unpaid.pk).status == "pending"
    assert sorted(Refund.objects.values_list("reason", flat=True)) == ["event cancelled"] * 2


# --- the webhook inbox -----------------------------------------------------------------------


def stored_webhook(client, payment: Payment) -> WebhookEvent:
    """The sandbox's signed webhook for the payment, stored as received (its task never ran)."""
    body = json.dumps(
        {"id": "evt_admin", "data": {"reference": payment.gateway_reference, "status": "succeeded",
                                     "amount": "75.00", "currency": "USD"}}
    ).encode()  # fmt: skip
    signature = sign(body, gateway_for("sandbox").secret)
    response = client.post(
        "/api/payments/webhook/sandbox",
        body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: signature},
    )
    assert response.status_code == 200
    return WebhookEvent.objects.get(event_id="evt_admin")


def test_a_stored_webhook_is_processed_again_from_its_page(cashier, celery_app_without_worker):
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")
    event = stored_webhook(cashier, payment)
    url = f"/admin/payments/webhookevent/{event.pk}/"

    page = cashier.get(f"{url}change/").content.decode()
    assert 'name="_save"' not in page and "Re-process" in page

    response = cashier.post(f"{url}actions/reprocess/", follow=True)

    assert messages_of(response) == [f"Processed; payment {payment.public_id} is succeeded."]
    event.refresh_from_db()
    assert event.processed_at is not None and event.payment_id == payment.pk
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert "Re-process" not in cashier.get(f"{url}change/").content.decode()
    again = cashier.post(f"{url}actions/reprocess/", follow=True)
    assert messages_of(again)[0].startswith("This webhook is not processed again: it was processed at")


def test_a_webhook_the_gateway_does_not_bear_out_stays_unprocessed(cashier, celery_app_without_worker):
    payment, _ = start_sandbox_payment()  # the webhook says succeeded; the sandbox says pending
    event = stored_webhook(cashier, payment)

    response = cashier.post(f"/admin/payments/webhookevent/{event.pk}/actions/reprocess/", follow=True)

    assert messages_of(response) == [
        "The gateway does not bear it out yet (the gateway says pending, the webhook said succeeded); "
        "it stays unprocessed."
    ]
    event.refresh_from_db()
    assert event.processed_at is None and event.checks == 1


# --- CSV exports -----------------------------------------------------------------------------


def export(client, url: str, resource: str, columns: list[str]) -> list[dict[str, str]]:
    """Submit the export page at `url` (with its query string) as staff do: every column, CSV."""
    page = client.get(url)
    assert page.status_code == 200 and 'type="submit"' in page.content.decode()
    form = {"format": "0", "resource": "0"} | {f"{resource}_{column}": "on" for column in columns}
    response = client.post(url, form)
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


PAYMENT_COLUMNS = [
    "payment_id",
    "created_at",
    "customer_email",
    "gateway",
    "gateway_reference",
    "status",
    "amount",
    "currency",
    "refunded_amount",
    "purpose",
    "purpose_ids",
]


def test_the_payments_export_has_the_listed_rows_with_plain_amounts(cashier):
    paid = paid_payment()
    services.refund_reserve(
        payment_id=paid.pk, amount="25.00", reason="x", idempotency_key="r", requested_by_id=None
    )
    refunded = Refund.objects.get()
    services.refund_apply_result(refund_id=refunded.pk, result=_refunded(refunded))
    start_sandbox_payment()  # pending: filtered out
    listing = cashier.get(f"{PAYMENTS}?status__exact=partially_refunded").content.decode()
    assert f'href="{PAYMENTS}export/?status__exact=partially_refunded"' in listing

    rows = export(
        cashier, f"{PAYMENTS}export/?status__exact=partially_refunded", "paymentresource", PAYMENT_COLUMNS
    )

    paid.refresh_from_db()
    assert rows == [
        {
            "payment_id": paid.public_id,
            "created_at": paid.created_at.isoformat(timespec="seconds"),
            "customer_email": paid.customer.email,
            "gateway": "sandbox",
            "gateway_reference": paid.gateway_reference,
            "status": "partially_refunded",
            "amount": "75.00",
            "currency": "USD",
            "refunded_amount": "25.00",
            "purpose": "gadget",
            "purpose_ids": paid.allocations.get().purpose_id,
        }
    ]


def test_the_refunds_export(cashier):
    paid = paid_payment()
    refund = services.refund_reserve(
        payment_id=paid.pk, amount="30.00", reason="late delivery", idempotency_key="r", requested_by_id=None
    )
    columns = ["refund_id", "payment_id", "created_at", "amount", "currency", "reason", "status", "gateway"]

    rows = export(cashier, "/admin/payments/refund/export/", "refundresource", columns)

    assert [(r["refund_id"], r["payment_id"], r["amount"], r["reason"], r["status"]) for r in rows] == [
        (refund.public_id, paid.public_id, "30.00", "late delivery", "pending")
    ]
    assert list(rows[0]) == columns  # only the columns asked for, in order


def test_staff_who_cannot_see_payments_cannot_export_them(client):
    paid_payment()
    client.force_login(staff_with("view_refund"))

    assert client.get(f"{PAYMENTS}export/").status_code == 403
    assert client.post(f"{PAYMENTS}export/", {"format": "0", "resource": "0"}).status_code == 403


def _refunded(refund: Refund):
    from payments.gateways.base import RefundResult, Status

    return RefundResult(
        refund_reference=f"gw-{refund.public_id}",
        status=Status.SUCCEEDED,
        amount=refund.amount,
        currency="USD",
    )
