from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.timezone import now
from django_object_actions import DjangoObjectActions
from django_object_actions import action as _object_action
from import_export.admin import ExportMixin

from core.errors import ApplicationError
from core.events.maintenance import ReplayError, dead_letter_dismiss, dead_letter_replay
from core.events.relay import outbox_lag_seconds
from core.models import DeadLetter, Heartbeat, OutboxEvent, ProcessedEvent
from core.money import MoneyError, exponent


def money_display(amount, currency: str) -> str:
    """`amount` with its currency's minor digits and thousands separators: "1,250.00 NGN", "37 JPY"."""
    if amount is None:
        return "-"
    try:
        digits = exponent(currency)
    except MoneyError:
        return f"{amount} {currency}"
    return f"{amount:,.{digits}f} {currency}"


def object_action(
    *,
    label: str,
    description: str = "",
    permission: str = "change",
    form: bool = False,
    shown: Callable[[object], bool] | None = None,
):
    """A button on an object's page (django-object-actions) that calls a service.

    - `permission`: the model permission the staff member needs ("change" by default; any
      codename of the model, e.g. "replay"); checked when the button is drawn and again when
      it is pressed.
    - `form=False`: the button posts at once (never a GET with an effect). `form=True`: the
      button opens a page (GET) where the method renders its form or confirmation with
      `confirm_page`, and the POST of that page does the work (`confirm_then_run` does both);
      every action that moves money is a form, so it asks first.
    - `shown(obj)`: draw the button only when it can apply (a paid payment can be refunded...).
      The service still decides: a refusal is shown as a message, never a crash.

    The method takes (self, request, obj) and returns None (back to the object's page) or a
    response.
    """

    def decorator(func):
        @wraps(func)
        def run(self, request, obj):
            if not self.has_action_permission(request, permission):
                raise PermissionDenied
            if not isinstance(obj, models.Model):  # django-object-actions' list-level route
                raise Http404("This button is on an object's page.")
            return func(self, request, obj)

        run.action_permission = permission
        run.action_shown = shown
        return _object_action(
            run,
            label=label,
            description=description or label,
            methods=("GET", "POST") if form else ("POST",),
            button_type="a" if form else "form",
        )

    return decorator


class ObjectActionsAdmin(DjangoObjectActions, admin.ModelAdmin):
    """A model admin whose object pages carry buttons (`object_action`) that call services.

    `run_service` shows the service's refusal (an ApplicationError) as an error message and
    its success as a success message; `confirm_page` asks before an action that moves money
    or cannot be undone, with an optional form (amount, reason...); `confirm_then_run` asks
    with `confirm_page`, then runs the service with the form's data through `run_service`.
    """

    change_actions: tuple[str, ...] = ()

    def has_action_permission(self, request, permission: str) -> bool:
        codename = get_permission_codename(permission, self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def get_change_actions(self, request, object_id, form_url):
        obj = self.get_object(request, object_id)
        if obj is None:
            return []
        names = []
        for name in self.change_actions:
            method = getattr(self, name)
            if not self.has_action_permission(request, method.action_permission):
                continue
            if method.action_shown is not None and not method.action_shown(obj):
                continue
            names.append(name)
        return names

    def run_service(self, request, call: Callable[[], object], done: str | Callable[[object], str]):
        """Call the service; its refusal becomes an error message, its result a success message."""
        try:
            result = call()
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        self.message_user(request, done(result) if callable(done) else done, messages.SUCCESS)
        return result

    def confirm_page(self, request, obj, *, title: str, button: str, warning: str = "", form=None):
        """The page that asks before the action: what it does, its form if any, Yes and Cancel."""
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "object": obj,
            "title": title,
            "button": button,
            "warning": warning,
            "form": form,
            "back_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
        }
        return TemplateResponse(request, "admin/core/confirm_action.html", context)

    def confirm_then_run(
        self,
        request,
        obj,
        *,
        title: str,
        button: str,
        call: Callable[[dict], object],
        done: str | Callable[[object], str],
        warning: str = "",
        form_class: Callable[..., forms.Form] | None = None,
    ):
        """A `form=True` action: the confirmation page (with `form_class`'s form, if any) until it
        is posted valid; then `call(cleaned_data)` ({} without a form) through `run_service`, and
        None (back to the object's page)."""
        form, ok = confirmation(request, form_class) if form_class else (None, request.method == "POST")
        if not ok:
            return self.confirm_page(request, obj, title=title, button=button, warning=warning, form=form)
        self.run_service(request, lambda: call(form.cleaned_data if form else {}), done)
        return None


class ExportableAdmin(ExportMixin, ObjectActionsAdmin):
    """ObjectActionsAdmin with an Export button on the list: the filtered rows as CSV
    (django-import-export; set `resource_classes` to the columns the accountant needs)."""

    def has_export_permission(self, request):
        # import-export lets any staff member export unless told otherwise: whoever may not
        # see the list may not download it either.
        return self.has_view_permission(request)


def admin_link(obj, text: str | None = None) -> str:
    """`text` (by default the object itself) linked to the object's admin page."""
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
    return format_html('<a href="{}">{}</a>', url, obj if text is None else text)


def confirmation(request, form_class: Callable[..., forms.Form]) -> tuple[forms.Form, bool]:
    """The form of an action's confirmation page, and whether it was posted valid (then the
    action does its work; otherwise it shows `confirm_page` with the form)."""
    form = form_class(request.POST if request.method == "POST" else None)
    return form, request.method == "POST" and form.is_valid()


class ReadOnlyInline(admin.TabularInline):
    """Rows shown with their parent (a ledger, an audit trail, a payment's allocations): staff
    look, they do not edit; whoever may see the parent sees them."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None):
        return self.admin_site.get_model_admin(self.parent_model).has_view_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the system: staff look, they do not edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting an unpublished event loses it; deleting a processed marker allows a second effect.
        return False


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_seen", "age", "count"]

    @admin.display(description="seen", ordering="-last_seen")
    def age(self, beat: Heartbeat) -> str:
        """How long ago, in words: beat sends one every 30 s, so minutes mean something is down."""
        seconds = (now() - beat.last_seen).total_seconds()
        return f"{seconds:.0f} s ago" if seconds < 120 else f"{timesince(beat.last_seen)} ago"


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "type", "aggregate_id", "occurred_at", "published_at", "attempts", "last_error"]
    list_filter = ["type", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["event_id", "aggregate_id", "type"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    def changelist_view(self, request, extra_context=None):
        unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
        lag = outbox_lag_seconds()
        title = f"Outbox: {unpublished} unpublished, oldest waiting {lag:.1f}s (as of {now():%H:%M:%S})"
        return super().changelist_view(request, extra_context={"title": title, **(extra_context or {})})


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "subscriber", "processed_at"]
    list_filter = ["subscriber"]
    search_fields = ["event_id"]
    show_full_result_count = False


class DismissForm(forms.Form):
    note = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why its event needs no effect (kept in the log with your name).",
    )


def _unresolved(letter: DeadLetter) -> bool:
    return letter.resolved_at is None


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin, ObjectActionsAdmin):
    list_display = [
        "last_failed_at",
        "event_type",
        "subscriber",
        "short_error",
        "attempts",
        "replayed_at",
        "resolved_at",
    ]
    list_filter = [
        ("resolved_at", admin.EmptyFieldListFilter),
        "subscriber",
        "event_type",
        ("last_failed_at", admin.DateFieldListFilter),
    ]
    search_fields = ["event_id", "error", "subscriber"]
    date_hierarchy = "last_failed_at"
    fields = [
        "event_type",
        "event_id",
        "subscriber",
        "error",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "replayed_at",
        "resolved_at",
        "envelope",
        "traceback",
    ]
    readonly_fields = fields
    actions = ["replay"]
    change_actions = ("replay_letter", "dismiss_letter")

    @admin.display(description="error")
    def short_error(self, letter: DeadLetter) -> str:
        return letter.error if len(letter.error) <= 120 else f"{letter.error[:119]}…"

    def has_replay_permission(self, request):
        return request.user.has_perm("core.replay_deadletter")

    @admin.action(description="Replay the selected dead letters", permissions=["replay"])
    def replay(self, request, queryset):
        queued = 0
        for letter in queryset.filter(resolved_at__isnull=True):
            try:
                dead_letter_replay(dead_letter_id=letter.pk)
                queued += 1
            except ReplayError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(
            request, f"{queued} dead letters sent to their subscribers again.", messages.SUCCESS
        )

    @object_action(
        label="Replay",
        description="Send the event to its subscriber again; the letter resolves when it succeeds",
        permission="replay",
        shown=_unresolved,
    )
    def replay_letter(self, request, letter):
        self.run_service(
            request,
            lambda: dead_letter_replay(dead_letter_id=letter.pk),
            f"Sent to {letter.subscriber} again; this letter resolves when it succeeds.",
        )

    @object_action(
        label="Dismiss…",
        description="Resolve it without replaying: its event needs no effect",
        permission="replay",
        form=True,
        shown=_unresolved,
    )
    def dismiss_letter(self, request, letter):
        def dismiss(data) -> DeadLetter:
            """Resolve it, and keep who and why in the admin's history of the letter."""
            dismissed = dead_letter_dismiss(
                dead_letter_id=letter.pk, by=request.user.get_username(), note=data["note"]
            )
            self.log_change(request, letter, f"Dismissed without a replay: {data['note']}")
            return dismissed

        return self.confirm_then_run(
            request,
            letter,
            form_class=DismissForm,
            title=f"Dismiss the dead letter of {letter.subscriber}",
            button="Yes, dismiss it",
            warning=f"{letter.subscriber} will never handle {letter.event_type} {letter.event_id}: "
            "whatever it was to do, someone does by hand or not at all.",
            call=dismiss,
            done="Dismissed: resolved without a replay.",
        )
