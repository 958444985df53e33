"""Staff views of children, plans, subscriptions, invoices and toyboxes. Nothing here edits a
status: the buttons on a page call the services the API calls (and so publish their events),
and ask first where money moves (charging a saved card)."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from core.admin import (
    ExportableAdmin,
    ObjectActionsAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_link,
    money_display,
    object_action,
)
from core.errors import ApplicationError
from subscriptions import services
from subscriptions.models import Child, Invoice, Plan, Subscription, Toybox, ToyboxItem
from subscriptions.resources import InvoiceResource


@admin.register(Child)
class ChildAdmin(admin.ModelAdmin):
    list_display = ["name", "customer", "birth_date", "interests"]
    search_fields = ["name", "customer__email"]
    raw_id_fields = ["customer"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "price_display",
        "period_months",
        "toys_per_box",
        "age_min_months",
        "age_max_months",
        "is_active",
    ]
    list_filter = ["is_active", "period_months", "currency"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="price", ordering="price")
    def price_display(self, plan: Plan) -> str:
        return money_display(plan.price, plan.currency)


def _payment(public_id: str) -> str:
    """A link to the payments list searched for the payment (its id is payments', not a key here)."""
    if not public_id:
        return "-"
    url = reverse("admin:payments_payment_changelist") + f"?q={public_id}"
    return format_html('<a href="{}">{}</a>', url, public_id)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="Kept with the subscription's status.")


class InvoiceInline(ReadOnlyInline):
    model = Invoice
    fields = [
        "invoice_link",
        "period_start",
        "period_end",
        "amount_display",
        "status",
        "attempts",
        "next_attempt_at",
        "payment",
        "last_error",
    ]
    readonly_fields = fields

    @admin.display(description="invoice")
    def invoice_link(self, invoice: Invoice) -> str:
        url = reverse("admin:subscriptions_invoice_change", args=[invoice.pk])
        return format_html('<a href="{}">{}</a>', url, invoice.number)

    @admin.display(description="amount")
    def amount_display(self, invoice: Invoice) -> str:
        return money_display(invoice.amount, invoice.currency)

    @admin.display(description="payment")
    def payment(self, invoice: Invoice) -> str:
        return _payment(invoice.payment_id)


class ToyboxInline(ReadOnlyInline):
    model = Toybox
    fk_name = "subscription"
    fields = ["box_link", "period_start", "status", "tracking_number", "note"]
    readonly_fields = fields

    @admin.display(description="toybox")
    def box_link(self, toybox: Toybox) -> str:
        url = reverse("admin:subscriptions_toybox_change", args=[toybox.pk])
        return format_html('<a href="{}">{}</a>', url, toybox.public_id)


def _staff(request, what: str) -> str:
    return f"{what} by staff {request.user.pk}"


@admin.register(Subscription)
class SubscriptionAdmin(ObjectActionsAdmin, ReadOnlyAdmin):
    list_display = [
        "public_id",
        "customer_link",
        "child",
        "plan",
        "status",
        "next_renewal_at",
        "current_period_end",
        "cancel_at_period_end",
        "created_at",
    ]
    list_filter = ["status", "plan", "cancel_at_period_end", "skip_next", "created_at"]
    list_select_related = ["child", "plan", "customer"]
    search_fields = ["public_id", "customer__email", "child__name", "invoices__number"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Subscription._meta.fields if f.name != "customer"] + [
        "customer_link",
        "payments",
    ]
    exclude = ["customer"]
    inlines = [InvoiceInline, ToyboxInline]
    change_actions = ("pause", "resume", "skip_next_box", "cancel_at_end", "cancel_now")

    @admin.display(description="customer", ordering="customer__email")
    def customer_link(self, subscription: Subscription) -> str:
        return admin_link(subscription.customer, subscription.customer.email)

    @admin.display(description="payments")
    def payments(self, subscription: Subscription) -> str:
        numbers = ",".join(subscription.invoices.values_list("number", flat=True))
        url = reverse("admin:payments_payment_changelist") + f"?purpose=subscription&q={numbers}"
        return format_html('<a href="{}">payments of its invoices</a>', url)

    @object_action(
        label="Pause",
        description="No renewal (no charge, no box) until resumed; the paid period runs to its end",
        shown=lambda s: s.status in ("active", "past_due"),
    )
    def pause(self, request, subscription):
        self.run_service(
            request,
            lambda: services.subscription_pause(
                subscription_id=subscription.pk, reason=_staff(request, "paused")
            ),
            f"Subscription {subscription.public_id} paused.",
        )

    @object_action(
        label="Resume…",
        description="Renew again: at the paid period's end, or now if it has ended",
        form=True,
        shown=lambda s: s.status == "paused",
    )
    def resume(self, request, subscription):
        # Resuming can charge the saved card at the next renewal pass: it asks first.
        price = money_display(subscription.plan.price, subscription.plan.currency)
        return self.confirm_then_run(
            request,
            subscription,
            title=f"Resume subscription {subscription.public_id}",
            button="Yes, resume it",
            warning=(
                "Renewals start again: an invoice still open for a period not yet over is charged "
                f"now, and a period that has ended renews now at {price}, charged to the customer's "
                "saved card."
            ),
            call=lambda _: services.subscription_resume(subscription_id=subscription.pk),
            done=lambda s: f"Subscription {s.public_id} resumed ({s.status}).",
        )

    @object_action(
        label="Skip the next box",
        description="The next period is neither charged nor sent",
        shown=lambda s: s.status == "active" and not s.cancel_at_period_end and not s.skip_next,
    )
    def skip_next_box(self, request, subscription):
        self.run_service(
            request,
            lambda: services.subscription_skip(subscription_id=subscription.pk),
            f"Subscription {subscription.public_id}: the next box is skipped.",
        )

    def _cancel(self, request, subscription: Subscription, *, at_period_end: bool, title: str, warning: str):
        return self.confirm_then_run(
            request,
            subscription,
            form_class=ReasonForm,
            title=title,
            button="Yes, cancel it",
            warning=warning,
            call=lambda data: services.subscription_cancel(
                subscription_id=subscription.pk,
                at_period_end=at_period_end,
                reason=data["reason"] or _staff(request, "cancelled"),
            ),
            done=lambda s: (
                f"Subscription {s.public_id} "
                + ("ends at the end of its paid period." if s.cancel_at_period_end else "cancelled.")
            ),
        )

    @object_action(
        label="Cancel at the period's end",
        description="No renewal: the paid period and its box run to their end",
        form=True,
        shown=lambda s: s.status == "active" and not s.cancel_at_period_end,
    )
    def cancel_at_end(self, request, subscription):
        return self._cancel(
            request,
            subscription,
            at_period_end=True,
            title=f"Cancel subscription {subscription.public_id} at the end of its period",
            warning="It is not renewed; the paid period's box is still sent.",
        )

    @object_action(
        label="Cancel now",
        description="Cancel at once: its open invoices are void (nothing is refunded)",
        form=True,
        shown=lambda s: s.status != "cancelled",
    )
    def cancel_now(self, request, subscription):
        return self._cancel(
            request,
            subscription,
            at_period_end=False,
            title=f"Cancel subscription {subscription.public_id} now",
            warning="It ends now and its open invoices are void. Nothing is refunded: refund from the "
            "payment's page if money is owed back.",
        )


@admin.register(Invoice)
class InvoiceAdmin(ExportableAdmin, ReadOnlyAdmin):
    resource_classes = [InvoiceResource]
    list_display = [
        "number",
        "customer_link",
        "subscription",
        "period_start",
        "amount_display",
        "status",
        "attempts",
        "next_attempt_at",
        "paid_at",
        "payment",
    ]
    list_filter = [
        "status",
        ("currency", admin.AllValuesFieldListFilter),  # those in use, not every one the gateways take
        "subscription__plan",
        "period_start",
        "paid_at",
    ]
    list_select_related = ["subscription__plan", "customer"]
    search_fields = ["number", "subscription__public_id", "customer__email", "payment_id"]
    date_hierarchy = "period_start"
    readonly_fields = [f.name for f in Invoice._meta.fields if f.name not in ("amount", "customer")] + [
        "customer_link",
        "amount_display",
        "payment",
    ]
    exclude = ["amount", "customer"]
    change_actions = ("charge_now",)

    @admin.display(description="customer", ordering="customer__email")
    def customer_link(self, invoice: Invoice) -> str:
        return admin_link(invoice.customer, invoice.customer.email)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, invoice: Invoice) -> str:
        return money_display(invoice.amount, invoice.currency)

    @admin.display(description="payment")
    def payment(self, invoice: Invoice) -> str:
        return _payment(invoice.payment_id)

    @object_action(
        label="Charge now",
        description="Charge the customer's saved method for this invoice now (a worker does it)",
        form=True,
        shown=lambda i: i.status == "open",
    )
    def charge_now(self, request, invoice):
        warning = f"The customer's saved method is charged {money_display(invoice.amount, invoice.currency)}."
        if invoice.held_at:
            warning += " Its last charge's outcome is unknown (held for staff): this sends a new one."

        return self.confirm_then_run(
            request,
            invoice,
            title=f"Charge invoice {invoice.number} now",
            button="Yes, charge it",
            warning=warning,
            call=lambda _: services.invoice_charge_request(invoice_id=invoice.pk),
            done="The charge is sent to a worker; this page shows its outcome.",
        )


class ToyboxItemInline(ReadOnlyInline):
    model = ToyboxItem
    fields = ["sku", "name", "variant"]
    readonly_fields = fields


class ShipForm(forms.Form):
    tracking_number = forms.CharField(max_length=100, help_text="The carrier's tracking number.")


@admin.register(Toybox)
class ToyboxAdmin(ObjectActionsAdmin, ReadOnlyAdmin):
    list_display = [
        "public_id",
        "child",
        "subscription",
        "month",
        "status",
        "short",
        "toys",
        "tracking_number",
        "customer",
    ]
    list_filter = ["status", "period_start"]
    list_select_related = ["child", "customer", "subscription"]
    search_fields = ["public_id", "customer__email", "child__name", "tracking_number", "invoice__number"]
    date_hierarchy = "period_start"
    readonly_fields = [f.name for f in Toybox._meta.fields]
    inlines = [ToyboxItemInline]
    actions = ["rebuild_selected"]
    change_actions = ("rebuild", "mark_shipped", "mark_delivered")

    @admin.display(description="month", ordering="period_start")
    def month(self, toybox: Toybox) -> str:
        return f"{toybox.period_start:%Y-%m}"

    @admin.display(description="short", boolean=True)
    def short(self, toybox: Toybox) -> bool:
        return toybox.status == Toybox.Status.SHORT

    @admin.display(description="toys")
    def toys(self, toybox: Toybox) -> str:
        return f"{toybox.toy_count} of {toybox.toys_wanted}"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(toy_count=Count("items"))

    @object_action(
        label="Rebuild",
        description="Fill the short box again from stock (once the missing toys have arrived)",
        shown=lambda b: b.status == "short",
    )
    def rebuild(self, request, toybox):
        self.run_service(
            request,
            lambda: services.toybox_rebuild(toybox_id=toybox.pk),
            lambda b: f"Toybox {b.public_id} rebuilt: {b.status}{f' ({b.note})' if b.note else ''}.",
        )

    @object_action(label="Mark shipped", form=True, shown=lambda b: b.status == "ready")
    def mark_shipped(self, request, toybox):
        return self.confirm_then_run(
            request,
            toybox,
            form_class=ShipForm,
            title=f"Ship toybox {toybox.public_id}",
            button="Mark shipped",
            warning="Its toys leave the stock.",
            call=lambda data: services.toybox_ship(
                toybox_id=toybox.pk, tracking_number=data["tracking_number"]
            ),
            done=f"Toybox {toybox.public_id} shipped.",
        )

    @object_action(label="Mark delivered", shown=lambda b: b.status == "shipped")
    def mark_delivered(self, request, toybox):
        self.run_service(
            request,
            lambda: services.toybox_deliver(toybox_id=toybox.pk),
            f"Toybox {toybox.public_id} delivered.",
        )

    def has_operate_permission(self, request) -> bool:
        return self.has_action_permission(request, "change")

    @admin.action(description="Rebuild the selected short boxes from stock", permissions=["operate"])
    def rebuild_selected(self, request, queryset):
        rebuilt = 0
        for toybox in queryset.order_by("pk"):
            try:
                services.toybox_rebuild(toybox_id=toybox.pk)
            except ApplicationError as exc:
                self.message_user(request, f"{toybox}: {exc.message}", messages.ERROR)
                continue
            rebuilt += 1
        if rebuilt:
            self.message_user(request, f"{rebuilt} rebuilt (see their status).", messages.SUCCESS)
