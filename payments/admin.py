"""Staff views of payments. Nothing here edits a status: actions call the services."""

import uuid

from django.contrib import admin, messages

from core.admin import ReadOnlyInline
from core.errors import ApplicationError
from payments import services
from payments.models import (
    FlaggedPayment,
    Payment,
    PaymentAllocation,
    PaymentLedgerEntry,
    Refund,
    SandboxMethod,
    WebhookEvent,
)
from payments.tasks import refund_execute


class AllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fields = ["purpose", "purpose_id", "amount", "refunded_amount", "outcome", "outcome_note", "settled_at"]
    readonly_fields = fields


class LedgerInline(ReadOnlyInline):
    model = PaymentLedgerEntry
    fields = ["created_at", "source", "reported_status", "amount", "currency", "note", "raw"]
    readonly_fields = fields


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = [
        "public_id",
        "amount",
        "currency",
        "full",
        "reason",
        "status",
        "error",
        "requested_by",
        "created_at",
    ]
    readonly_fields = fields


class WebhookInline(ReadOnlyInline):
    model = WebhookEvent
    fields = ["received_at", "event_id", "signature_valid", "processed_at", "error"]
    readonly_fields = fields


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


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "customer",
        "amount",
        "currency",
        "gateway",
        "status",
        "purpose",
        "flagged_reason",
    ]
    list_filter = ["status", "gateway", "purpose", "kind", FlaggedFilter]
    search_fields = ["public_id", "gateway_reference", "customer__email", "allocations__purpose_id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Payment._meta.fields]
    inlines = [AllocationInline, LedgerInline, RefundInline, WebhookInline]
    actions = ["refund_in_full"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Refund everything left on the selected payments", permissions=["change"])
    def refund_in_full(self, request, queryset):
        queued = 0
        for payment in queryset:
            try:
                refund = services.refund_reserve(
                    payment_id=payment.pk,
                    amount=None,
                    reason=f"refunded by {request.user.email} in the admin",
                    idempotency_key=f"admin:{uuid.uuid4()}",
                    requested_by_id=request.user.pk,
                )
            except ApplicationError as exc:
                self.message_user(request, f"{payment.public_id}: {exc.message}", messages.ERROR)
                continue
            refund_execute.delay(refund.pk)
            queued += 1
        if queued:
            self.message_user(request, f"{queued} refunds sent to the gateway.", messages.SUCCESS)


@admin.register(FlaggedPayment)
class FlaggedPaymentAdmin(PaymentAdmin):
    list_display = ["public_id", "gateway", "status", "amount", "currency", "flagged_reason", "updated_at"]
    list_filter = ["gateway", "status"]

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(flagged_reason="")


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "gateway",
        "event_id",
        "signature_valid",
        "payment",
        "processed_at",
        "error",
    ]
    list_filter = ["gateway", "signature_valid", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["event_id", "payment__public_id"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
