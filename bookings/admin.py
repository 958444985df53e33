"""Staff views of resources and bookings. Nothing here edits a status: actions call the services.

The bookings list, filtered by resource and drilled down by day (date hierarchy), is the
day view per resource; each booking shows its payment and its audit trail.
"""

from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from bookings import services
from bookings.models import (
    Booking,
    BookingAudit,
    OpeningHours,
    Resource,
    ScheduleException,
    Service,
    minutes_of_day,
)
from core.admin import ReadOnlyInline
from core.errors import ApplicationError


class OpeningHoursFormSet(forms.BaseInlineFormSet):
    """The intervals of one weekday must not overlap."""

    def clean(self):
        super().clean()
        by_day: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if data.get("DELETE") or not data.get("opens") or data.get("closes") is None:
                continue
            span = (minutes_of_day(data["opens"]), minutes_of_day(data["closes"], closing=True))
            for other in by_day[data["weekday"]]:
                if span[0] < other[1] and other[0] < span[1]:
                    raise forms.ValidationError(
                        f"Opening hours of {OpeningHours.Weekday(data['weekday']).label} overlap."
                    )
            by_day[data["weekday"]].append(span)


class OpeningHoursInline(admin.TabularInline):
    model = OpeningHours
    formset = OpeningHoursFormSet
    extra = 0


class ScheduleExceptionInline(admin.TabularInline):
    model = ScheduleException
    extra = 0
    fields = ["date", "closed", "opens", "closes", "note"]


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "timezone", "price_per_hour", "currency", "active", "bookings_link"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [OpeningHoursInline, ScheduleExceptionInline]

    @admin.display(description="bookings")
    def bookings_link(self, resource: Resource) -> str:
        url = reverse("admin:bookings_booking_changelist") + f"?resource__id__exact={resource.pk}"
        return format_html('<a href="{}">by day</a>', url)


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "duration_minutes", "price", "currency", "active"]
    list_filter = ["active", "resources"]
    filter_horizontal = ["resources"]


class AuditInline(ReadOnlyInline):
    model = BookingAudit
    fields = [
        "at",
        "source",
        "actor",
        "from_status",
        "to_status",
        "from_payment_status",
        "to_payment_status",
        "note",
    ]
    readonly_fields = fields


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "resource",
        "local_start",
        "local_end",
        "customer",
        "status",
        "payment_status",
        "amount_due",
        "currency",
        "payment_link",
        "needs_attention",
    ]
    list_filter = ["resource", "status", "payment_status", "needs_attention", "starts_at"]
    list_select_related = ["resource", "customer", "payment"]
    date_hierarchy = "starts_at"
    ordering = ["starts_at"]
    search_fields = ["public_id", "customer__email", "payment__public_id"]
    readonly_fields = [f.name for f in Booking._meta.fields if f.name != "payment"] + [
        "payment_link",
        "local_start",
        "local_end",
    ]
    exclude = ["payment"]
    inlines = [AuditInline]
    actions = [
        "confirm",
        "confirm_paid_in_cash",
        "cancel_with_refund",
        "cancel_without_refund",
        "mark_completed",
        "mark_no_show",
        "resolve_attention",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="start (local)", ordering="starts_at")
    def local_start(self, booking: Booking) -> str:
        return f"{booking.starts_at.astimezone(booking.resource.tz):%Y-%m-%d %H:%M}"

    @admin.display(description="end (local)", ordering="ends_at")
    def local_end(self, booking: Booking) -> str:
        return f"{booking.ends_at.astimezone(booking.resource.tz):%Y-%m-%d %H:%M}"

    @admin.display(description="payment")
    def payment_link(self, booking: Booking) -> str:
        if not booking.payment_id:
            return "-"
        url = reverse("admin:payments_payment_change", args=[booking.payment_id])
        return format_html('<a href="{}">{} ({})</a>', url, booking.payment.public_id, booking.payment.status)

    def _apply(self, request, queryset, action, done: str, **kwargs) -> None:
        changed = 0
        for booking in queryset.order_by("pk"):
            try:
                action(booking_id=booking.pk, actor_id=request.user.pk, **kwargs)
            except ApplicationError as exc:
                self.message_user(request, f"{booking.public_id}: {exc.message}", messages.ERROR)
                continue
            changed += 1
        if changed:
            self.message_user(request, f"{changed} bookings {done}.", messages.SUCCESS)

    @admin.action(description="Confirm the selected bookings", permissions=["change"])
    def confirm(self, request, queryset):
        self._apply(request, queryset, services.booking_confirm, "confirmed")

    @admin.action(description="Confirm as paid in cash", permissions=["change"])
    def confirm_paid_in_cash(self, request, queryset):
        self._apply(request, queryset, services.booking_confirm, "confirmed, paid in cash", paid_in_cash=True)

    @admin.action(description="Cancel and refund what was paid online", permissions=["change"])
    def cancel_with_refund(self, request, queryset):
        self._apply(
            request,
            queryset,
            services.booking_cancel,
            "cancelled with a refund",
            by_staff=True,
            refund=True,
            reason=f"cancelled by {request.user.email} in the admin",
        )

    @admin.action(description="Cancel without a refund", permissions=["change"])
    def cancel_without_refund(self, request, queryset):
        self._apply(
            request,
            queryset,
            services.booking_cancel,
            "cancelled without a refund",
            by_staff=True,
            refund=False,
            reason=f"cancelled by {request.user.email} in the admin",
        )

    @admin.action(description="Mark completed", permissions=["change"])
    def mark_completed(self, request, queryset):
        self._apply(request, queryset, services.booking_complete, "completed")

    @admin.action(description="Mark no-show", permissions=["change"])
    def mark_no_show(self, request, queryset):
        self._apply(request, queryset, services.booking_no_show, "marked no-show")

    @admin.action(description="Mark attention resolved", permissions=["change"])
    def resolve_attention(self, request, queryset):
        self._apply(request, queryset, services.booking_resolve_attention, "resolved")
