"""What a payment's page shows with it, and the links from a payment to what it pays for."""

from functools import cache
from urllib.parse import urlencode

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from core import http
from core.admin import (
    ReadOnlyInline,
    admin_link,
    money_display,
)
from core.errors import BusinessRuleViolation, Unavailable
from payments.gateways.base import GatewayError
from payments.models import (
    Payment,
    PaymentAllocation,
    PaymentLedgerEntry,
    Refund,
    RefundShare,
    WebhookEvent,
)

PAID = (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED)
ITEMS_LISTED = 3  # items of a multi-item payment named in the list; the page names them all


@cache
def _item_list_url(purpose: str) -> str:
    """The admin list of a purpose's items: by convention the registered model named like the
    purpose ("order" -> orders.Order); "" when there is none. Payments names no app."""
    for model in apps.get_models():
        if model._meta.model_name == purpose and admin.site.is_registered(model):
            try:
                return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            except NoReverseMatch:
                return ""
    return ""


def item_link(allocation: PaymentAllocation) -> str:
    """The item as "order A-1042", linked to its purpose's admin list searched for its id."""
    url = _item_list_url(allocation.purpose)
    if not url:
        return format_html("{} {}", allocation.purpose, allocation.purpose_id)
    query = urlencode({"q": allocation.purpose_id})
    return format_html('<a href="{}?{}">{} {}</a>', url, query, allocation.purpose, allocation.purpose_id)


def gateway_call(call, **kwargs):
    """A gateway call made from a staff page: within the API's time budget, its failure a message."""
    try:
        with http.time_budget(settings.PAYMENT_GATEWAY_REQUEST_BUDGET_SECONDS):
            return call(**kwargs)
    except GatewayError as exc:
        if exc.transient:
            raise Unavailable(f"The gateway did not answer ({exc}); try again later.") from exc
        raise BusinessRuleViolation(f"The gateway refused: {exc}") from exc


# --- inlines ---------------------------------------------------------------------------------


class AllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fields = ["item", "kind", "amount_shown", "refunded_shown", "outcome", "outcome_note", "settled_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment")

    @admin.display(description="pays for")
    def item(self, allocation):
        return item_link(allocation)

    @admin.display(description="amount")
    def amount_shown(self, allocation):
        return money_display(allocation.amount, allocation.payment.currency)

    @admin.display(description="refunded")
    def refunded_shown(self, allocation):
        return money_display(allocation.refunded_amount, allocation.payment.currency)


class LedgerInline(ReadOnlyInline):
    model = PaymentLedgerEntry
    fields = ["created_at", "source", "reported_status", "amount_shown", "note", "raw"]
    readonly_fields = fields

    @admin.display(description="amount")
    def amount_shown(self, entry):
        return money_display(entry.amount, entry.currency) if entry.currency else "-"


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = ["refund", "amount_shown", "full", "reason", "status", "error", "requested_by", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("requested_by")

    @admin.display(description="refund")
    def refund(self, refund):
        return admin_link(refund, refund.public_id)

    @admin.display(description="amount")
    def amount_shown(self, refund):
        return money_display(refund.amount, refund.currency)


class WebhookInline(ReadOnlyInline):
    model = WebhookEvent
    fields = ["webhook", "event_id", "proof", "processed_at", "error"]
    readonly_fields = fields

    @admin.display(description="received")
    def webhook(self, event):
        return admin_link(event, f"{event.received_at:%Y-%m-%d %H:%M:%S}")


class ShareInline(ReadOnlyInline):
    model = RefundShare
    fields = ["item", "amount_shown"]
    readonly_fields = fields
    verbose_name = "part of the refund"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("allocation", "refund")

    @admin.display(description="out of")
    def item(self, share):
        return item_link(share.allocation)

    @admin.display(description="amount")
    def amount_shown(self, share):
        return money_display(share.amount, share.refund.currency)
