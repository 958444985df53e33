"""Staff views of the catalogue and of orders.

Catalogue edits go through the admin's forms and then say so (`catalogue_changed`: the
product.updated event and the cache invalidation) in the same transaction. Order statuses
never change here directly: the buttons on an order's page call orders.services, as the API
does, and ask first where money or stock moves.
"""

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import F
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin import (
    ExportableAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_link,
    money_display,
    object_action,
)
from core.errors import ApplicationError
from core.models import OutboxEvent
from orders import services
from orders.catalogue import catalogue_changed
from orders.models import Category, Order, OrderAudit, OrderLine, Product, ProductImage, Variant
from orders.resources import OrderResource
from orders.stock import stock_low_check


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "parent", "position", "is_active"]
    list_filter = ["is_active", "parent"]
    list_editable = ["position", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        catalogue_changed(category_id=obj.pk, reason="category")

    def delete_model(self, request, obj):
        catalogue_changed(category_id=obj.pk, reason="category deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            catalogue_changed(category_id=pk, reason="category deleted")
        super().delete_queryset(request, queryset)


class VariantForm(forms.ModelForm):
    class Meta:
        model = Variant
        fields = [
            "sku",
            "name",
            "price",
            "currency",
            "attributes",
            "is_active",
            "stock_on_hand",
            "low_stock_threshold",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The page carries the stock it showed, so that an edit is applied as a difference.
        self.fields["stock_on_hand"].show_hidden_initial = True

    def stock_on_hand_shown(self) -> int | None:
        """The stock on hand the page showed when it was opened (None for a new variant)."""
        if self.instance.pk is None:
            return None
        field = self.fields["stock_on_hand"]
        raw = field.hidden_widget().value_from_datadict(
            self.data, self.files, self.add_initial_prefix("stock_on_hand")
        )
        try:
            return field.to_python(raw) if raw not in (None, "") else self.initial.get("stock_on_hand")
        except forms.ValidationError:
            return self.initial.get("stock_on_hand")


class VariantInline(admin.TabularInline):
    model = Variant
    form = VariantForm
    extra = 0
    fields = [
        "sku",
        "name",
        "price",
        "currency",
        "attributes",
        "is_active",
        "stock_on_hand",
        "stock_reserved",
        "low_stock_threshold",
    ]
    readonly_fields = ["stock_reserved"]
    can_delete = False  # variants that were ever ordered must stay; deactivate instead


class ImageInline(admin.TabularInline):
    model = ProductImage
    extra = 0
    fields = ["url", "alt", "position"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


class LowStockFilter(admin.SimpleListFilter):
    title = "stock"
    parameter_name = "stock"

    def lookups(self, request, model_admin):
        return [("low", "A variant under its threshold")]

    def queryset(self, request, queryset):
        if self.value() == "low":
            low = Variant.objects.filter(
                is_active=True, stock_on_hand__lt=F("stock_reserved") + F("low_stock_threshold")
            )
            return queryset.filter(pk__in=low.values("product_id"))
        return queryset


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "category", "is_active", "variant_count", "updated_at"]
    list_filter = ["is_active", "category", LowStockFilter]
    search_fields = ["name", "slug", "variants__sku"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [VariantInline, ImageInline]

    @admin.display(description="variants")
    def variant_count(self, obj) -> int:
        return obj.variants.count()

    def save_formset(self, request, form, formset, change):
        if formset.model is not Variant:
            return super().save_formset(request, form, formset, change)
        # The form holds values read when it was opened; checkouts and payments may have moved
        # the stock since. Under the rows' locks: save only the edited columns (never
        # stock_reserved), and apply a stock_on_hand edit as the difference staff typed.
        locked = {
            v.pk: v for v in Variant.objects.select_for_update().filter(product=form.instance).order_by("pk")
        }
        formset.save(commit=False)
        for variant in formset.new_objects:
            variant.save()
        shown = {f.instance.pk: f.stock_on_hand_shown() for f in formset.forms if f.instance.pk}
        for variant, changed in formset.changed_objects:
            now = locked[variant.pk]
            if "stock_on_hand" in changed:
                variant.stock_on_hand = now.stock_on_hand + (variant.stock_on_hand - shown[variant.pk])
                if variant.stock_on_hand < now.stock_reserved:
                    self.message_user(
                        request,
                        f"{variant.sku}: stock on hand not changed: {now.stock_reserved} are reserved by "
                        f"unpaid orders and the edit would leave {variant.stock_on_hand}.",
                        messages.ERROR,
                    )
                    changed = [name for name in changed if name != "stock_on_hand"]
                    variant.stock_on_hand = now.stock_on_hand
            variant.save(update_fields=[*changed, "updated_at"])
            variant.stock_reserved = now.stock_reserved
            stock_low_check(variant, available_before=now.stock_available)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        catalogue_changed(product_ids=[form.instance.pk], reason="edited")

    def delete_model(self, request, obj):
        catalogue_changed(product_ids=[obj.pk], reason="deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        catalogue_changed(product_ids=list(queryset.values_list("pk", flat=True)), reason="deleted")
        super().delete_queryset(request, queryset)


class LineInline(ReadOnlyInline):
    model = OrderLine
    fields = ["sku", "name", "price", "quantity", "line_total_display"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order")

    @admin.display(description="unit price")
    def price(self, line: OrderLine) -> str:
        return money_display(line.unit_price, line.order.currency)

    @admin.display(description="line total")
    def line_total_display(self, line: OrderLine) -> str:
        return money_display(line.line_total, line.order.currency)


class AuditInline(ReadOnlyInline):
    model = OrderAudit
    fields = ["at", "from_status", "to_status", "actor", "note"]
    readonly_fields = fields


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="Kept in the order's audit trail.")


class NoteForm(forms.Form):
    note = forms.CharField(max_length=500, required=False, help_text="What was done, for the audit trail.")


def _actor(request) -> str:
    return f"staff {request.user.pk}"


def _late_payment_held(order: Order) -> bool:
    return (
        order.needs_attention
        and order.status == Order.Status.EXPIRED
        and order.stock_state == Order.Stock.RESERVED
    )


@admin.register(Order)
class OrderAdmin(ExportableAdmin, ReadOnlyAdmin):
    """Orders are changed only by their buttons (the services the API calls); the page is read-only.

    A paid order is refunded from its payment's page (payments' refund button); the order then
    follows payment.refunded.
    """

    resource_classes = [OrderResource]
    list_display = [
        "number",
        "created_at",
        "customer_link",
        "total_display",
        "status",
        "paid_at",
        "fulfilled_at",
        "payment_link",
        "needs_attention",
    ]
    list_filter = [
        "status",
        "needs_attention",
        "stock_state",
        ("currency", admin.AllValuesFieldListFilter),  # those in use, not every one the gateways take
        "created_at",
        "paid_at",
    ]
    list_select_related = ["customer", "payment"]
    search_fields = ["number", "customer__email", "payment__public_id"]
    date_hierarchy = "created_at"
    inlines = [LineInline, AuditInline]
    actions = ["mark_fulfilled"]
    change_actions = ("fulfil", "cancel", "accept_late_payment", "refund_late_payment", "resolve_flag")
    fields = [
        "number",
        "customer_link",
        "status",
        "stock_state",
        "total_display",
        "payment_link",
        "payment_error",
        "deadline",
        "needs_attention",
        "attention_note",
        "created_at",
        "paid_at",
        "fulfilled_at",
        "closed_at",
        "events",
    ]
    readonly_fields = fields

    @admin.display(description="customer", ordering="customer__email")
    def customer_link(self, order: Order) -> str:
        return admin_link(order.customer, order.customer.email)

    @admin.display(description="total", ordering="total")
    def total_display(self, order: Order) -> str:
        return money_display(order.total, order.currency)

    @admin.display(description="payment")
    def payment_link(self, order: Order) -> str:
        if not order.payment_id:
            return "-"
        url = reverse("admin:payments_payment_change", args=[order.payment_id])
        return format_html('<a href="{}">{}</a> ({})', url, order.payment.public_id, order.payment.status)

    @admin.display(description="events")
    def events(self, order: Order) -> str:
        rows = OutboxEvent.objects.filter(aggregate_id=order.number).order_by("seq")
        if not rows:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} {} ({})</li>",
                ((e.occurred_at, e.type, "published" if e.published_at else "pending") for e in rows),
            ),
        )

    def has_operate_permission(self, request) -> bool:
        return self.has_action_permission(request, "change")

    @admin.action(description="Mark fulfilled (shipped)", permissions=["operate"])
    def mark_fulfilled(self, request, queryset):
        changed = 0
        for order in queryset.order_by("pk"):
            try:
                services.order_fulfil(order_id=order.pk, actor=_actor(request))
                changed += 1
            except ApplicationError as exc:
                self.message_user(request, f"{order.number}: {exc.message}", messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} order(s) marked fulfilled.", messages.SUCCESS)

    @object_action(label="Fulfil", description="The order has shipped", shown=lambda o: o.status == "paid")
    def fulfil(self, request, order):
        self.run_service(
            request,
            lambda: services.order_fulfil(order_id=order.pk, actor=_actor(request)),
            f"Order {order.number} fulfilled.",
        )

    @object_action(
        label="Cancel",
        description="Cancel the unpaid order: its stock returns and its payment is closed",
        form=True,
        shown=lambda o: o.status == "pending_payment",
    )
    def cancel(self, request, order):
        return self.confirm_then_run(
            request,
            order,
            form_class=ReasonForm,
            title=f"Cancel order {order.number}",
            button="Yes, cancel it",
            warning="Its stock returns and its payment can no longer be paid.",
            call=lambda data: services.order_cancel(
                order_id=order.pk, actor=_actor(request), reason=data["reason"]
            ),
            done=f"Order {order.number} cancelled.",
        )

    @object_action(
        label="Accept the late payment",
        description="The payment came after the order expired and its stock is held again: sell it",
        shown=_late_payment_held,
    )
    def accept_late_payment(self, request, order):
        self.run_service(
            request,
            lambda: services.order_accept_late_payment(order_id=order.pk, actor=_actor(request)),
            f"Order {order.number} is paid: its late payment was accepted.",
        )

    @object_action(
        label="Refund the late payment",
        description="Refund the payment that came after the order expired, and release its stock",
        form=True,
        shown=lambda o: o.needs_attention and o.status == "expired" and o.payment_id is not None,
    )
    def refund_late_payment(self, request, order):
        return self.confirm_then_run(
            request,
            order,
            title=f"Refund the late payment of order {order.number}",
            button="Yes, refund it",
            warning=(
                f"Payment {order.payment.public_id} is refunded at its gateway "
                f"({money_display(order.total, order.currency)}) and the order's stock is released."
                if order.payment  # none: the service refuses, and says so
                else ""
            ),
            call=lambda _: services.order_refund_late_payment(order_id=order.pk, actor=_actor(request)),
            done=f"Order {order.number}: its late payment is sent for refund.",
        )

    @object_action(
        label="Resolve the flag",
        description="What the order was flagged for has been dealt with",
        form=True,
        shown=lambda o: o.needs_attention,
    )
    def resolve_flag(self, request, order):
        return self.confirm_then_run(
            request,
            order,
            form_class=NoteForm,
            title=f"Resolve the flag of order {order.number}",
            button="Resolve",
            warning=order.attention_note,
            call=lambda data: services.order_attention_resolve(
                order_id=order.pk, actor=_actor(request), note=data["note"]
            ),
            done=f"Order {order.number}: flag resolved.",
        )
