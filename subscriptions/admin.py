"""Staff views of children, plans, subscriptions, invoices and toyboxes. Nothing here edits a
status: every action calls the services (and so publishes its events)."""

from celery import current_app
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyInline
from core.errors import ApplicationError
from subscriptions import services
from subscriptions.models import Child, Invoice, Plan, Subscription, Toybox, ToyboxItem
from subscriptions.services.renewals import CHARGE_TASK


@admin.register(Child)
class ChildAdmin(admin.ModelAdmin):
    list_display = ["name", "customer", "birth_date", "interests"]
    search_fields = ["name", "customer__email"]
    raw_id_fields = ["customer"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "price",
        "currency",
        "period_months",
        "toys_per_box",
        "age_min_months",
        "age_max_months",
        "is_active",
    ]
    list_filter = ["is_active", "period_months", "currency"]
    prepopulated_fields = {"slug": ["name"]}


def _apply(modeladmin, request, queryset, action, done: str, **kwargs) -> None:
    """Run a service on each selected row; one's refusal is reported and the others go on."""
    changed = 0
    for obj in queryset.order_by("pk"):
        try:
            action(obj, **kwargs)
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
            continue
        changed += 1
    if changed:
        modeladmin.message_user(request, f"{changed} {done}.", messages.SUCCESS)


class InvoiceInline(ReadOnlyInline):
    model = Invoice
    fields = [
        "number",
        "period_start",
        "period_end",
        "amount",
        "currency",
        "status",
        "attempts",
        "next_attempt_at",
        "payment_id",
        "last_error",
    ]
    readonly_fields = fields


class ToyboxInline(ReadOnlyInline):
    model = Toybox
    fk_name = "subscription"
    fields = ["box_link", "period_start", "status", "tracking_number", "note"]
    readonly_fields = fields

    @admin.display(description="toybox")
    def box_link(self, toybox: Toybox) -> str:
        url = reverse("admin:subscriptions_toybox_change", args=[toybox.pk])
        return format_html('<a href="{}">{}</a>', url, toybox.public_id)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "child",
        "plan",
        "customer",
        "status",
        "current_period_end",
        "next_renewal_at",
        "cancel_at_period_end",
    ]
    list_filter = ["status", "plan", "cancel_at_period_end"]
    list_select_related = ["child", "plan", "customer"]
    search_fields = ["public_id", "customer__email", "child__name", "invoices__number"]
    readonly_fields = [f.name for f in Subscription._meta.fields] + ["payments"]
    inlines = [InvoiceInline, ToyboxInline]
    actions = ["pause", "resume", "cancel_now", "cancel_at_end", "charge_now"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="payments")
    def payments(self, subscription: Subscription) -> str:
        numbers = ",".join(subscription.invoices.values_list("number", flat=True))
        url = reverse("admin:payments_payment_changelist") + f"?purpose=subscription&q={numbers}"
        return format_html('<a href="{}">payments of its invoices</a>', url)

    @admin.action(description="Pause the selected subscriptions", permissions=["change"])
    def pause(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda s: services.subscription_pause(
                subscription_id=s.pk, reason=f"paused by staff {request.user.pk}"
            ),
            "paused",
        )

    @admin.action(description="Resume the selected subscriptions", permissions=["change"])
    def resume(self, request, queryset):
        _apply(
            self, request, queryset, lambda s: services.subscription_resume(subscription_id=s.pk), "resumed"
        )

    @admin.action(description="Cancel now (open invoices void)", permissions=["change"])
    def cancel_now(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda s: services.subscription_cancel(
                subscription_id=s.pk, at_period_end=False, reason=f"cancelled by staff {request.user.pk}"
            ),
            "cancelled",
        )

    @admin.action(description="Cancel at the end of the paid period", permissions=["change"])
    def cancel_at_end(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda s: services.subscription_cancel(
                subscription_id=s.pk, at_period_end=True, reason=f"cancelled by staff {request.user.pk}"
            ),
            "set to end",
        )

    @admin.action(description="Retry the charge of open invoices now", permissions=["change"])
    def charge_now(self, request, queryset):
        invoices = Invoice.objects.filter(subscription__in=queryset, status=Invoice.Status.OPEN)
        _charge_now(self, request, invoices)


def _charge_now(modeladmin, request, invoices) -> None:
    """Send an attempt for each (a task: the gateway is called outside the admin's request)."""
    sent = 0
    for pk, attempts in invoices.values_list("pk", "attempts"):
        # Staff decide: a charge held for them (its outcome unknown) is sent, under a new key.
        current_app.send_task(
            CHARGE_TASK, args=[pk], kwargs={"force": True, "attempt": attempts, "release_hold": True}
        )
        sent += 1
    level = messages.SUCCESS if sent else messages.WARNING
    modeladmin.message_user(request, f"{sent} charges sent; the invoices show the outcome.", level)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "subscription",
        "customer",
        "period_start",
        "amount",
        "currency",
        "status",
        "attempts",
        "next_attempt_at",
    ]
    list_filter = ["status", "currency"]
    list_select_related = ["subscription", "customer"]
    search_fields = ["number", "subscription__public_id", "customer__email", "payment_id"]
    readonly_fields = [f.name for f in Invoice._meta.fields]
    actions = ["charge_now"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry the charge now", permissions=["change"])
    def charge_now(self, request, queryset):
        _charge_now(self, request, queryset.filter(status=Invoice.Status.OPEN))


class ToyboxItemInline(ReadOnlyInline):
    model = ToyboxItem
    fields = ["sku", "name", "variant"]
    readonly_fields = fields


class ShipForm(ActionForm):
    tracking_number = forms.CharField(max_length=100, required=False, help_text="For Mark shipped")


@admin.register(Toybox)
class ToyboxAdmin(admin.ModelAdmin):
    list_display = ["public_id", "child", "period_start", "status", "toys", "tracking_number", "customer"]
    list_filter = ["status"]
    list_select_related = ["child", "customer"]
    search_fields = ["public_id", "customer__email", "child__name", "tracking_number", "invoice__number"]
    readonly_fields = [f.name for f in Toybox._meta.fields]
    inlines = [ToyboxItemInline]
    action_form = ShipForm
    actions = ["rebuild", "mark_shipped", "mark_delivered"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="toys")
    def toys(self, toybox: Toybox) -> str:
        return f"{toybox.items.count()} of {toybox.toys_wanted}"

    @admin.action(description="Rebuild the selected short boxes from stock", permissions=["change"])
    def rebuild(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda b: services.toybox_rebuild(toybox_id=b.pk),
            "rebuilt (see their status)",
        )

    @admin.action(description="Mark shipped (with the tracking number above)", permissions=["change"])
    def mark_shipped(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Mark one box shipped at a time: each has its tracking number.", messages.ERROR
            )
            return
        tracking = request.POST.get("tracking_number", "")
        _apply(
            self,
            request,
            queryset,
            lambda b: services.toybox_ship(toybox_id=b.pk, tracking_number=tracking),
            "shipped",
        )

    @admin.action(description="Mark delivered", permissions=["change"])
    def mark_delivered(self, request, queryset):
        _apply(self, request, queryset, lambda b: services.toybox_deliver(toybox_id=b.pk), "delivered")
