"""Refunds, the webhook inbox and the sandbox's saved cards."""

from django.contrib import admin

from core.admin import (
    ExportableAdmin,
    ObjectActionsAdmin,
    ReadOnlyAdmin,
    admin_link,
    money_display,
    object_action,
)
from core.errors import BusinessRuleViolation
from payments import webhooks
from payments.admin.parts import ShareInline, gateway_call
from payments.models import (
    Refund,
    SandboxMethod,
    WebhookEvent,
)
from payments.resources import RefundResource

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
        return admin_link(refund.payment, refund.payment.public_id)

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
                gateway_call(webhooks.webhook_verify, webhook_event_id=event.pk)
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
