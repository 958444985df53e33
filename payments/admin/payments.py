"""Payments and the flagged ones: the lists, the exports and the buttons on a payment's page."""

import uuid
from decimal import Decimal
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_permission_codename
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from core.admin import (
    ExportableAdmin,
    ReadOnlyAdmin,
    admin_link,
    money_display,
    object_action,
)
from core.errors import ApplicationError
from core.money import MoneyError, exponent, quantize
from payments import services
from payments.admin.parts import (
    ITEMS_LISTED,
    PAID,
    AllocationInline,
    LedgerInline,
    RefundInline,
    WebhookInline,
    gateway_call,
    item_link,
)
from payments.models import (
    FlaggedPayment,
    Payment,
    Refund,
)
from payments.resources import PaymentResource

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


class ResolveFlagForm(forms.Form):
    note = forms.CharField(max_length=500, help_text="What was done about it, kept in the payment's ledger.")


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
    change_actions = ("refund", "reverify", "resolve_flag")
    resource_classes = [PaymentResource]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer").prefetch_related("allocations")

    # --- columns ---

    @admin.display(description="customer", ordering="customer__email")
    def customer_link(self, payment):
        return admin_link(payment.customer, payment.customer.email)

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
        return self.confirm_then_run(
            request,
            payment,
            form_class=partial(
                RefundForm, initial={"key": uuid.uuid4()}, left=left, currency=payment.currency
            ),
            title=f"Refund {payment.public_id}",
            button="Yes, refund",
            warning=f"The money goes back to {payment.customer.email} through {payment.gateway}; "
            f"a refund cannot be undone. Refundable now: {money_display(left, payment.currency)}.",
            call=lambda data: services.refund_request(
                payment_id=payment.pk,
                amount=data["amount"],
                reason=data["reason"],
                idempotency_key=f"admin:{payment.public_id}:{data['key']}",
                requested_by_id=request.user.pk,
            ),
            done=lambda refund: (
                f"Refund {refund.public_id} of {money_display(refund.amount, refund.currency)} "
                f"is reserved; {payment.gateway} is asked now, and its answer shows on this page."
            ),
        )

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
            request, lambda: gateway_call(services.payment_verify, payment_id=payment.pk), answered
        )

    @object_action(
        label="Resolve the flag…",
        description="Take the payment off the mismatch list once you have dealt with it",
        form=True,
        shown=lambda payment: bool(payment.flagged_reason),
    )
    def resolve_flag(self, request, payment):
        shown = self.confirm_then_run(
            request,
            payment,
            form_class=ResolveFlagForm,
            title=f"Resolve the flag on {payment.public_id}",
            button="Yes, resolve it",
            warning=f"Flagged for: {payment.flagged_reason}. The payment's ledger keeps this "
            "with your note; a new mismatch flags it again.",
            call=lambda data: services.payment_flag_resolve(
                payment_id=payment.pk, note=data["note"], by=request.user.email
            ),
            done="The flag is resolved; the ledger keeps what it was and your note.",
        )
        # Back to the payment's own page: once resolved it is no longer on the flagged list.
        return shown or redirect("admin:payments_payment_change", payment.pk)

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
