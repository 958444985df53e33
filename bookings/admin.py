"""Staff views of resources and bookings. Nothing here edits a status: the buttons on a
booking's page call the services the API calls, and ask first where money is at stake.

The calendar (a day per resource, or all resources side by side, on their wall clocks) links
each booking to its page; the list filters by resource, status and day and exports CSV.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from bookings import services
from bookings.availability import day_spans, local_to_utc
from bookings.models import (
    Booking,
    BookingAudit,
    OpeningHours,
    Resource,
    ScheduleException,
    Service,
    minutes_of_day,
)
from bookings.resources import BookingResource
from bookings.selectors import resource_exceptions, resource_weekly_hours
from core.admin import (
    ExportableAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_link,
    money_display,
    object_action,
)
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
    list_display = ["name", "kind", "timezone", "price", "active", "bookings_link"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [OpeningHoursInline, ScheduleExceptionInline]

    @admin.display(description="price per hour", ordering="price_per_hour")
    def price(self, resource: Resource) -> str:
        return money_display(resource.price_per_hour, resource.currency)

    @admin.display(description="bookings")
    def bookings_link(self, resource: Resource) -> str:
        return format_html(
            '<a href="{}">calendar</a> · <a href="{}">list</a>',
            reverse("admin:bookings_booking_calendar") + f"?resource={resource.pk}",
            reverse("admin:bookings_booking_changelist") + f"?resource__id__exact={resource.pk}",
        )


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "duration_minutes", "price_display", "active"]
    list_filter = ["active", "resources"]
    filter_horizontal = ["resources"]

    @admin.display(description="price", ordering="price")
    def price_display(self, service: Service) -> str:
        return money_display(service.price, service.currency)


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


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="Kept in the booking's audit trail.")


class NoteForm(forms.Form):
    note = forms.CharField(max_length=500, required=False, help_text="Kept in the booking's audit trail.")


HOLDING = (Booking.Status.PENDING_PAYMENT, Booking.Status.CONFIRMED)
PAID = (Booking.PaymentStatus.PAID, Booking.PaymentStatus.DEPOSIT_PAID)


def _local(moment: datetime, booking: Booking) -> str:
    return f"{moment.astimezone(booking.resource.tz):%Y-%m-%d %H:%M %Z}"


def _refund_note(booking: Booking, refund: bool | None) -> str:
    """What a cancellation does with the money, for its confirmation page."""
    if booking.payment_status not in PAID:
        return "Nothing has been paid: the slot is freed."
    paid = f"what was paid online (up to {money_display(booking.amount_due, booking.currency)})"
    hours = settings.BOOKING_FREE_CANCEL_HOURS
    if refund is None:
        if services.booking_refund_due(booking=booking):
            return f"More than {hours} hours before its start: {paid} is refunded in full."
        return f"Less than {hours} hours before its start: nothing is refunded."
    if refund:
        return f"Whatever the policy says, {paid} is refunded in full."
    return "Whatever the policy says, nothing is refunded; the slot is freed."


class WhenFilter(admin.SimpleListFilter):
    """Bookings ahead or behind (the date hierarchy above the list narrows to a day)."""

    title = "when"
    parameter_name = "when"

    def lookups(self, request, model_admin):
        return [("upcoming", "Upcoming"), ("week", "In the next 7 days"), ("past", "Past")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "upcoming":
            return queryset.filter(ends_at__gt=now)
        if self.value() == "week":
            return queryset.filter(ends_at__gt=now, starts_at__lt=now + timedelta(days=7))
        if self.value() == "past":
            return queryset.filter(ends_at__lte=now)
        return queryset


@admin.register(Booking)
class BookingAdmin(ExportableAdmin, ReadOnlyAdmin):
    resource_classes = [BookingResource]
    import_export_change_list_template = "admin/bookings/booking/change_list.html"  # + Calendar
    list_display = [
        "public_id",
        "when",
        "resource",
        "customer_link",
        "status",
        "payment_status",
        "total_display",
        "due_display",
        "payment_link",
        "needs_attention",
        "created_at",
    ]
    list_filter = ["status", "resource", WhenFilter, "payment_status", "needs_attention", "created_at"]
    list_select_related = ["resource", "customer", "payment"]
    date_hierarchy = "starts_at"
    ordering = ["starts_at"]
    search_fields = ["public_id", "customer__email", "payment__public_id", "resource__name"]
    fields = [
        "public_id",
        "resource",
        "calendar_link",
        "service",
        "customer_link",
        "local_start",
        "local_end",
        "status",
        "payment_status",
        "payment_kind",
        "total_display",
        "due_display",
        "payment_link",
        "payment_error",
        "hold_expires_at",
        "reminder_sent_at",
        "needs_attention",
        "attention_note",
        "notes",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [AuditInline]
    actions = ["confirm_selected", "complete_selected", "no_show_selected"]
    change_actions = (
        "confirm",
        "confirm_paid_in_cash",
        "cancel",
        "cancel_without_refund",
        "cancel_with_refund",
        "mark_completed",
        "mark_no_show",
        "resolve_attention",
    )

    @admin.display(description="when (local)", ordering="starts_at")
    def when(self, booking: Booking) -> str:
        tz = booking.resource.tz
        start, end = booking.starts_at.astimezone(tz), booking.ends_at.astimezone(tz)
        return f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} {start:%Z}"

    @admin.display(description="start (local)", ordering="starts_at")
    def local_start(self, booking: Booking) -> str:
        return _local(booking.starts_at, booking)

    @admin.display(description="end (local)", ordering="ends_at")
    def local_end(self, booking: Booking) -> str:
        return _local(booking.ends_at, booking)

    @admin.display(description="customer", ordering="customer__email")
    def customer_link(self, booking: Booking) -> str:
        return admin_link(booking.customer, booking.customer.email)

    @admin.display(description="total", ordering="amount_total")
    def total_display(self, booking: Booking) -> str:
        return money_display(booking.amount_total, booking.currency)

    @admin.display(description="online payment", ordering="amount_due")
    def due_display(self, booking: Booking) -> str:
        return f"{money_display(booking.amount_due, booking.currency)} ({booking.payment_kind})"

    @admin.display(description="payment")
    def payment_link(self, booking: Booking) -> str:
        if not booking.payment_id:
            return "-"
        url = reverse("admin:payments_payment_change", args=[booking.payment_id])
        return format_html('<a href="{}">{} ({})</a>', url, booking.payment.public_id, booking.payment.status)

    @admin.display(description="calendar")
    def calendar_link(self, booking: Booking) -> str:
        day = booking.starts_at.astimezone(booking.resource.tz).date()
        url = reverse("admin:bookings_booking_calendar") + f"?resource={booking.resource_id}&date={day}"
        return format_html('<a href="{}">the day on the calendar</a>', url)

    # --- Buttons on a booking's page ---------------------------------------------------------

    def _call(self, request, booking: Booking, service, done: str, **kwargs) -> None:
        self.run_service(
            request,
            lambda: service(booking_id=booking.pk, actor_id=request.user.pk, **kwargs),
            f"Booking {booking.public_id} {done}.",
        )

    @object_action(label="Confirm", shown=lambda b: b.status in ("pending_payment", "expired"))
    def confirm(self, request, booking):
        self._call(request, booking, services.booking_confirm, "confirmed")

    @object_action(
        label="Confirm, paid at the desk",
        description="The customer paid (the rest) at the desk: confirmed and paid",
        form=True,
        shown=lambda b: (
            b.status in ("pending_payment", "confirmed", "expired") and b.payment_status != "paid"
        ),
    )
    def confirm_paid_in_cash(self, request, booking):
        return self.confirm_then_run(
            request,
            booking,
            form_class=NoteForm,
            title=f"Confirm booking {booking.public_id} as paid at the desk",
            button="Yes, it is paid",
            warning="Its online payment, if it can still be paid, is closed.",
            call=lambda data: services.booking_confirm(
                booking_id=booking.pk, actor_id=request.user.pk, paid_in_cash=True, note=data["note"]
            ),
            done=f"Booking {booking.public_id} confirmed, paid at the desk.",
        )

    def _cancel(self, request, booking: Booking, refund: bool | None, title: str):
        by = f"cancelled by {request.user.email} in the admin"
        return self.confirm_then_run(
            request,
            booking,
            form_class=ReasonForm,
            title=title,
            button="Yes, cancel it",
            warning=_refund_note(booking, refund),
            call=lambda data: services.booking_cancel(
                booking_id=booking.pk,
                actor_id=request.user.pk,
                by_staff=True,
                refund=refund,
                reason="; ".join(filter(None, [data["reason"], by])),
            ),
            done=f"Booking {booking.public_id} cancelled.",
        )

    @object_action(
        label="Cancel (refund per policy)",
        description="Free the slot; what was paid online is refunded if the cancellation policy says so",
        form=True,
        shown=lambda b: b.status in HOLDING,
    )
    def cancel(self, request, booking):
        return self._cancel(request, booking, None, f"Cancel booking {booking.public_id}")

    @object_action(
        label="Cancel without refund",
        description="Free the slot and keep what was paid, whatever the policy says",
        form=True,
        shown=lambda b: b.status in HOLDING and b.payment_status in PAID,
    )
    def cancel_without_refund(self, request, booking):
        return self._cancel(request, booking, False, f"Cancel booking {booking.public_id} without refund")

    @object_action(
        label="Cancel and refund in full",
        description="Free the slot and refund what was paid online, whatever the policy says",
        form=True,
        shown=lambda b: b.status in HOLDING and b.payment_status in PAID,
    )
    def cancel_with_refund(self, request, booking):
        return self._cancel(request, booking, True, f"Cancel booking {booking.public_id} with a full refund")

    @object_action(label="Mark completed", shown=lambda b: b.status == "confirmed")
    def mark_completed(self, request, booking):
        self._call(request, booking, services.booking_complete, "completed")

    @object_action(label="Mark no-show", shown=lambda b: b.status == "confirmed")
    def mark_no_show(self, request, booking):
        self._call(request, booking, services.booking_no_show, "marked no-show")

    @object_action(label="Resolve attention", form=True, shown=lambda b: b.needs_attention)
    def resolve_attention(self, request, booking):
        return self.confirm_then_run(
            request,
            booking,
            form_class=NoteForm,
            title=f"Resolve what booking {booking.public_id} was flagged for",
            button="Resolve",
            warning=booking.attention_note,
            call=lambda data: services.booking_resolve_attention(
                booking_id=booking.pk, actor_id=request.user.pk, note=data["note"]
            ),
            done=f"Booking {booking.public_id} resolved.",
        )

    # --- Bulk actions that move no money -----------------------------------------------------

    def has_operate_permission(self, request) -> bool:
        return self.has_action_permission(request, "change")

    def _apply(self, request, queryset, service, done: str) -> None:
        changed = 0
        for booking in queryset.order_by("pk"):
            try:
                service(booking_id=booking.pk, actor_id=request.user.pk)
            except ApplicationError as exc:
                self.message_user(request, f"{booking.public_id}: {exc.message}", messages.ERROR)
                continue
            changed += 1
        if changed:
            self.message_user(request, f"{changed} bookings {done}.", messages.SUCCESS)

    @admin.action(description="Confirm the selected bookings", permissions=["operate"])
    def confirm_selected(self, request, queryset):
        self._apply(request, queryset, services.booking_confirm, "confirmed")

    @admin.action(description="Mark the selected bookings completed", permissions=["operate"])
    def complete_selected(self, request, queryset):
        self._apply(request, queryset, services.booking_complete, "completed")

    @admin.action(description="Mark the selected bookings no-show", permissions=["operate"])
    def no_show_selected(self, request, queryset):
        self._apply(request, queryset, services.booking_no_show, "marked no-show")

    # --- The calendar ------------------------------------------------------------------------

    def get_urls(self):
        calendar = path(
            "calendar/", self.admin_site.admin_view(self.calendar_view), name="bookings_booking_calendar"
        )
        return [calendar, *super().get_urls()]

    def calendar_view(self, request):
        """A day's bookings per resource, on each resource's wall clock: ?resource=<id>&date=YYYY-MM-DD
        (no resource: all of them side by side; no date: today)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        resources = list(Resource.objects.order_by("name"))
        chosen = request.GET.get("resource", "")
        shown = [r for r in resources if str(r.pk) == chosen] if chosen else resources
        if chosen and not shown:
            raise Http404("No such resource.")
        today = timezone.now().astimezone(shown[0].tz).date() if len(shown) == 1 else timezone.localdate()
        try:
            day = date.fromisoformat(request.GET["date"]) if request.GET.get("date") else today
        except ValueError:
            self.message_user(request, "The date is YYYY-MM-DD; showing today.", messages.ERROR)
            day = today
        grid = calendar_grid(shown, day)
        query = f"resource={chosen}&" if chosen else ""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Bookings on {day:%A %d %B %Y}",
            "day": day,
            "grid": grid,
            "resources": resources,
            "chosen": chosen,
            "previous_url": f"?{query}date={day - timedelta(days=1)}",
            "next_url": f"?{query}date={day + timedelta(days=1)}",
            "today_url": f"?{query}date={today}",
        }
        return TemplateResponse(request, "admin/bookings/booking/calendar.html", context)


CALENDAR_STATUSES = ("pending_payment", "confirmed", "completed", "no_show")  # drawn on the grid


@dataclass
class Block:
    """A booking drawn on a column: where (px from the grid's top, one per minute) and what it says."""

    booking: Booking
    top: int
    height: int
    label: str
    url: str


@dataclass
class Column:
    resource: Resource
    open: list[tuple[int, int]]  # opening spans as (top, height) in px
    blocks: list[Block] = field(default_factory=list)
    others: list[Block] = field(default_factory=list)  # cancelled or expired: listed under the grid


@dataclass
class Grid:
    columns: list[Column]
    hours: list[tuple[int, str]]  # (top px, "09:00")
    height: int


def _wall_minutes(moment: datetime, start: datetime, end: datetime, tz: tzinfo) -> int:
    """Minutes past local midnight shown by the wall clock, clamped to the day [start, end)."""
    if moment <= start:
        return 0
    if moment >= end:
        return 24 * 60
    local = moment.astimezone(tz)
    return local.hour * 60 + local.minute


def calendar_grid(resources: list[Resource], day: date) -> Grid:
    """Each resource's bookings on `day` of its own time zone, placed on one wall-clock grid
    running from the earliest opening or booking to the latest (whole hours, 09-18 at least)."""
    spans, rows = {}, {}
    first, last = 9 * 60, 18 * 60
    for resource in resources:
        tz = resource.tz
        start, end = local_to_utc(day, 0, tz), local_to_utc(day + timedelta(days=1), 0, tz)
        weekly = resource_weekly_hours(resource_id=resource.pk)
        spans[resource.pk] = list(
            day_spans(day, weekly, resource_exceptions(resource_id=resource.pk, start_date=day, end_date=day))
        )
        bookings = (
            Booking.objects.filter(resource=resource, starts_at__lt=end, ends_at__gt=start)
            .select_related("customer")
            .order_by("starts_at", "pk")
        )
        rows[resource.pk] = [
            (b, _wall_minutes(b.starts_at, start, end, tz), _wall_minutes(b.ends_at, start, end, tz))
            for b in bookings
        ]
        minutes = [m for span in spans[resource.pk] for m in span]
        minutes += [m for b, s, e in rows[resource.pk] if b.status in CALENDAR_STATUSES for m in (s, e)]
        first, last = min([first, *minutes]), max([last, *minutes])
    first, last = first // 60 * 60, min(-(-last // 60) * 60, 24 * 60)

    def px(minute: int) -> int:  # one pixel a minute: the template's hour lines are 60 px apart
        return minute - first

    columns = []
    for resource in resources:
        column = Column(resource, [(px(o), px(c) - px(o)) for o, c in spans[resource.pk]])
        for booking, s, e in rows[resource.pk]:
            tz = resource.tz
            label = (
                f"{booking.starts_at.astimezone(tz):%H:%M}-{booking.ends_at.astimezone(tz):%H:%M} "
                f"{booking.customer.email} · {booking.get_status_display()}"
            )
            block = Block(
                booking,
                px(s),
                px(e) - px(s),
                label,
                reverse("admin:bookings_booking_change", args=[booking.pk]),
            )
            (column.blocks if booking.status in CALENDAR_STATUSES else column.others).append(block)
        columns.append(column)
    hours = [(px(m), f"{m // 60:02d}:00") for m in range(first, last, 60)]
    return Grid(columns, hours, px(last))
