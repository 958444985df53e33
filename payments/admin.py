"""Staff views of payments. Nothing here edits a status: the buttons call the services the API
and the tasks call, and every page of a system-written row is read-only (no Save button)."""

import uuid
from decimal import Decimal
from functools import cache
from urllib.parse import urlencode

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.contrib.auth import get_permission_codename
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core import http
from core.admin import (
    ExportableAdmin,
    ObjectActionsAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    money_display,
    object_action,
)
from core.errors import ApplicationError, BusinessRuleViolation, Unavailable
from core.money import MoneyError, exponent, quantize
from payments import services, webhooks
from payments.gateways.base import GatewayError
from payments.models import (
    FlaggedPayment,
    Payment,
    PaymentAllocation,
    PaymentLedgerEntry,
    Refund,
    RefundShare,
    SandboxMethod,
    WebhookEvent,
)
from payments.resources import PaymentResource, RefundResource

PAID = (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED)
ITEMS_LISTED = 3  # items of a multi-item payment named in the list; the page names them all


def _admin_link(obj, text: str) -> str:
    """`text` linked to `obj`'s admin page."""
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[quote(obj.pk)])
    return format_html('<a href="{}">{}</a>', url, text)


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


def _gateway_call(call, **kwargs):
    """A gateway call made from a staff page: within the API's time budget, its failure a message."""
    try:
        with http.time_budget(settings.PAYMENT_GATEWAY_REQUEST_BUDGET_SECONDS):
            return call(**kwargs)
    except GatewayError as exc:
        if exc.transient:
            raise Unavailable(f"The gateway did not answer ({exc}); try again later.") from exc
        raise BusinessRuleViolation(f"The gateway refused: {exc}") from exc


# --- inlines ---------------------------------------------------------------------------------


class PartInline(ReadOnlyInline):
    """Rows that are part of a payment or a refund: whoever may see it sees them."""

    def has_view_permission(self, request, obj=None):
        return self.admin_site.get_model_admin(self.parent_model).has_view_permission(request, obj)


class AllocationInline(PartInline):
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


class LedgerInline(PartInline):
    model = PaymentLedgerEntry
    fields = ["created_at", "source", "reported_status", "amount_shown", "note", "raw"]
    readonly_fields = fields

    @admin.display(description="amount")
    def amount_shown(self, entry):
        return money_display(entry.amount, entry.currency) if entry.currency else "-"


class RefundInline(PartInline):
    model = Refund
    fields = ["refund", "amount_shown", "full", "reason", "status", "error", "requested_by", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("requested_by")

    @admin.display(description="refund")
    def refund(self, refund):
        return _admin_link(refund, refund.public_id)

    @admin.display(description="amount")
    def amount_shown(self, refund):
        return money_display(refund.amount, refund.currency)


class WebhookInline(PartInline):
    model = WebhookEvent
    fields = ["webhook", "event_id", "proof", "processed_at", "error"]
    readonly_fields = fields

    @admin.display(description="received")
    def webhook(self, event):
        return _admin_link(event, f"{event.received_at:%Y-%m-%d %H:%M:%S}")


class ShareInline(PartInline):
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


# --- payments --------------------------------------------------------------------------------


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged"), ("no", "Not flagged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(flagged_reason="")
        if self.value() == "no":
            return queryset.filter(flagged_reason="")
        return queryset


class RefundForm(forms.Form):
    amount = forms.DecimalField(required=False, max_digits=14, decimal_places=3)
    reason = forms.CharField(max_length=255, help_text="Kept with the refund and sent to the gateway.")
    # One key per confirmation page: pressing Yes twice asks for one refund.
    key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, left: Decimal, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.left, self.currency = left, currency
        amount = self.fields["amount"]
        amount.help_text = f"Empty: everything left, {money_display(left, currency)}. At most that much."
        amount.widget.attrs["step"] = str(Decimal(1).scaleb(-exponent(currency)))  # 0.01, or 1 for JPY

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount is None:
            return None
        if amount <= 0:
            raise forms.ValidationError("A refund is more than zero.")
        try:
            amount = quantize(amount, self.currency)
        except MoneyError as exc:
            raise forms.ValidationError(str(exc)) from exc
        if amount > self.left:
            raise forms.ValidationError(f"At most {self.left} {self.currency} can be refunded.")
        return amount


class RefundSelectedForm(forms.Form):
    reason = forms.CharField(max_length=255, help_text="Kept with each refund and sent to the gateway.")
    key = forms.UUIDField(widget=forms.HiddenInput)


def _refundable(payment: Payment) -> bool:
    return payment.status in PAID and payment.refunded_amount < payment.amount


def _refundable_left(payment: Payment) -> Decimal:
    """What can still be refunded: refunded and pending refunds count (as the service counts)."""
    return quantize(sum(services.refundable_by_allocation(payment).values(), Decimal(0)), payment.currency)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin, ExportableAdmin):
    list_display = [
        "created_at",
        "public_id",
        "customer_link",
        "amount_shown",
        "refunded_shown",
        "gateway",
        "status",
        "pays",
        "flagged",
    ]
    list_display_links = ["public_id"]
    list_filter = [
        "status",
        "gateway",
        "purpose",
        "kind",
        FlaggedFilter,
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["customer"]
    search_fields = ["public_id", "gateway_reference", "customer__email", "allocations__purpose_id"]
    search_help_text = "Payment id, gateway reference, customer e-mail, or the id of what it pays for"
    date_hierarchy = "created_at"
    PAYMENT = [
        "public_id",
        "customer_link",
        "amount_shown",
        "refunded_shown",
        "status",
        "kind",
        "pays",
        "deadline",
    ]
    GATEWAY = ["gateway", "gateway_reference", "checkout_url", "saved_method", "last_error"]
    STAFF = ["flagged_reason", "reverify_queued_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": PAYMENT}),
        ("Gateway", {"fields": GATEWAY}),
        ("For staff", {"fields": STAFF}),
    ]
    readonly_fields = PAYMENT + GATEWAY + STAFF
    inlines = [AllocationInline, RefundInline, LedgerInline, WebhookInline]
    actions = ["refund_in_full"]
    change_actions = ("refund", "reverify")
    resource_classes = [PaymentResource]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer").prefetch_related("allocations")

    # --- columns ---

    @admin.display(description="customer", ordering="customer__email")
    def customer_link(self, payment):
        return _admin_link(payment.customer, payment.customer.email)

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, payment):
        return money_display(payment.amount, payment.currency)

    @admin.display(description="refunded", ordering="refunded_amount")
    def refunded_shown(self, payment):
        return money_display(payment.refunded_amount, payment.currency) if payment.refunded_amount else "-"

    @admin.display(description="pays for")
    def pays(self, payment):
        allocations = list(payment.allocations.all())  # prefetched: no query per row
        links = [(item_link(a),) for a in allocations[:ITEMS_LISTED]]
        if len(allocations) > ITEMS_LISTED:
            links.append((f"and {len(allocations) - ITEMS_LISTED} more",))
        return format_html_join(mark_safe("<br>"), "{}", links)

    @admin.display(description="flagged", boolean=True)
    def flagged(self, payment):
        return bool(payment.flagged_reason)

    # --- buttons on a payment's page ---

    @object_action(
        label="Refund…",
        description="Give money back to the customer through the gateway",
        form=True,
        shown=_refundable,
    )
    def refund(self, request, payment):
        left = _refundable_left(payment)
        form = RefundForm(
            request.POST if request.method == "POST" else None,
            initial={"key": uuid.uuid4()},
            left=left,
            currency=payment.currency,
        )
        if not form.is_valid():
            return self.confirm_page(
                request,
                payment,
                title=f"Refund {payment.public_id}",
                button="Yes, refund",
                warning=f"The money goes back to {payment.customer.email} through {payment.gateway}; "
                f"a refund cannot be undone. Refundable now: {money_display(left, payment.currency)}.",
                form=form,
            )
        data = form.cleaned_data
        self.run_service(
            request,
            lambda: services.refund_request(
                payment_id=payment.pk,
                amount=data["amount"],
                reason=data["reason"],
                idempotency_key=f"admin:{payment.public_id}:{data['key']}",
                requested_by_id=request.user.pk,
            ),
            lambda refund: (
                f"Refund {refund.public_id} of {money_display(refund.amount, refund.currency)} "
                f"is reserved; {payment.gateway} is asked now, and its answer shows on this page."
            ),
        )
        return None

    @object_action(
        label="Re-verify with the gateway",
        description="Ask the gateway for this payment's state now and apply its answer",
        shown=lambda payment: bool(payment.gateway_reference),
    )
    def reverify(self, request, payment):
        def answered(checked: Payment) -> str:
            flagged = f" Flagged: {checked.flagged_reason}" if checked.flagged_reason else ""
            return f"{checked.gateway} answered; the payment is {checked.status}.{flagged}"

        self.run_service(
            request, lambda: _gateway_call(services.payment_verify, payment_id=payment.pk), answered
        )

    # --- the list's bulk refund, with a confirmation page (as Django's delete) ---

    def has_refund_permission(self, request):
        return self.has_action_permission(request, "change")

    @admin.action(description="Refund everything left on the selected payments…", permissions=["refund"])
    def refund_in_full(self, request, queryset):
        pending = Sum("refunds__amount", filter=Q(refunds__status=Refund.Status.PENDING))
        selected = list(
            queryset.annotate(pending=Coalesce(pending, Decimal(0))).select_related("customer").order_by("pk")
        )
        rows = []
        for payment in selected:
            left = payment.amount - payment.refunded_amount - payment.pending
            rows.append((payment, left if payment.status in PAID and left > 0 else None))
        refundable = [(payment, left) for payment, left in rows if left is not None]
        form = RefundSelectedForm(request.POST if "post" in request.POST else None)
        if form.is_bound and form.is_valid():
            return self._refund_selected(request, [payment for payment, _ in refundable], form.cleaned_data)
        totals: dict[str, Decimal] = {}
        for payment, left in refundable:
            totals[payment.currency] = totals.get(payment.currency, Decimal(0)) + left
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund everything left on these payments?",
            "opts": self.opts,
            "rows": [
                (payment, money_display(left, payment.currency) if left is not None else None)
                for payment, left in rows
            ],
            "totals": [money_display(amount, currency) for currency, amount in sorted(totals.items())],
            "refundable": len(refundable),
            "form": form if form.is_bound else RefundSelectedForm(initial={"key": uuid.uuid4()}),
            "action": "refund_in_full",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/payments/payment/refund_selected.html", context)

    def _refund_selected(self, request, payments: list[Payment], data) -> None:
        reserved = 0
        for payment in payments:
            try:
                services.refund_request(
                    payment_id=payment.pk,
                    amount=None,
                    reason=data["reason"],
                    idempotency_key=f"admin:{payment.public_id}:{data['key']}",
                    requested_by_id=request.user.pk,
                )
            except ApplicationError as exc:
                self.message_user(request, f"{payment.public_id}: {exc.message}", messages.ERROR)
                continue
            reserved += 1
        if reserved:
            self.message_user(
                request, f"{reserved} refunds reserved; the gateways are asked now.", messages.SUCCESS
            )


@admin.register(FlaggedPayment)
class FlaggedPaymentAdmin(PaymentAdmin):
    list_display = [
        "updated_at",
        "public_id",
        "customer_link",
        "amount_shown",
        "gateway",
        "status",
        "flagged_reason",
        "pays",
    ]
    list_filter = ["gateway", "status", ("updated_at", admin.DateFieldListFilter)]
    date_hierarchy = "updated_at"

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(flagged_reason="")

    def has_action_permission(self, request, permission: str) -> bool:
        """The buttons need the payment's permission: this list is a view of payments."""
        codename = get_permission_codename(permission, Payment._meta)
        return request.user.has_perm(f"payments.{codename}")


# --- refunds ---------------------------------------------------------------------------------


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin, ExportableAdmin):
    list_display = [
        "created_at",
        "public_id",
        "payment_link",
        "customer",
        "amount_shown",
        "full",
        "reason",
        "status",
        "requested_by",
    ]
    list_display_links = ["public_id"]
    list_filter = ["status", "full", "payment__gateway", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["payment__customer", "requested_by"]
    search_fields = [
        "public_id",
        "payment__public_id",
        "gateway_refund_id",
        "payment__customer__email",
        "reason",
    ]
    date_hierarchy = "created_at"
    fields = [
        "public_id",
        "payment_link",
        "customer",
        "amount_shown",
        "full",
        "reason",
        "status",
        "gateway_refund_id",
        "sent_at",
        "error",
        "requested_by",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [ShareInline]
    resource_classes = [RefundResource]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment__customer", "requested_by")

    @admin.display(description="payment", ordering="payment__created_at")
    def payment_link(self, refund):
        return _admin_link(refund.payment, refund.payment.public_id)

    @admin.display(description="customer", ordering="payment__customer__email")
    def customer(self, refund):
        return refund.payment.customer.email

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, refund):
        return money_display(refund.amount, refund.currency)


# --- the webhook inbox -----------------------------------------------------------------------


def _waiting(event: WebhookEvent) -> bool:
    """Accepted and not processed yet: what the webhook task (or beat's sweep) still has to do."""
    accepted = event.signature_valid or event.proof == WebhookEvent.Proof.UNCONFIRMED
    return accepted and event.processed_at is None


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin, ObjectActionsAdmin):
    list_display = [
        "received_at",
        "gateway",
        "event_id",
        "proof",
        "claimed_status",
        "payment",
        "processed_at",
        "error",
    ]
    list_filter = [
        "gateway",
        "proof",
        "signature_valid",
        ("processed_at", admin.EmptyFieldListFilter),
        ("received_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["payment"]
    search_fields = ["event_id", "reference", "payment__public_id"]
    date_hierarchy = "received_at"
    readonly_fields = [f.name for f in WebhookEvent._meta.fields if f.name != "raw_body"]
    exclude = ["raw_body"]
    change_actions = ("reprocess",)

    @object_action(
        label="Re-process",
        description="Confirm it with the gateway's API now and apply what the API says",
        shown=_waiting,
    )
    def reprocess(self, request, event):
        def process() -> WebhookEvent:
            if not _waiting(event):
                why = (
                    f"it was processed at {event.processed_at:%Y-%m-%d %H:%M:%S}; "
                    "re-verify its payment instead"
                    if event.processed_at
                    else "it was refused (not authenticated) and is kept for the record only"
                )
                raise BusinessRuleViolation(f"This webhook is not processed again: {why}.")
            try:
                _gateway_call(webhooks.webhook_verify, webhook_event_id=event.pk)
            except webhooks.WebhookNotConfirmed as exc:
                raise BusinessRuleViolation(
                    f"The gateway does not bear it out yet ({exc}); it stays unprocessed."
                ) from exc
            return WebhookEvent.objects.select_related("payment").get(pk=event.pk)

        def done(processed: WebhookEvent) -> str:
            outcome = f" ({processed.error})" if processed.error else ""
            if processed.payment is None:
                return f"Processed{outcome}."
            payment = processed.payment
            return f"Processed{outcome}; payment {payment.public_id} is {payment.status}."

        self.run_service(request, process, done)


@admin.register(SandboxMethod)
class SandboxMethodAdmin(admin.ModelAdmin):
    """The sandbox's saved cards: set one to decline or to be unavailable to try dunning."""

    list_display = ["token", "label", "customer_key", "behaviour", "forgotten", "created_at"]
    list_editable = ["behaviour"]
    list_filter = ["behaviour", "forgotten"]
    search_fields = ["token", "customer_key"]
    readonly_fields = ["token", "customer_key", "label", "forgotten", "created_at"]

    def has_add_permission(self, request):
        return False
