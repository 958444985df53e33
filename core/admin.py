from django.contrib import admin, messages
from django.utils.timezone import now

from core.events.maintenance import ReplayError, dead_letter_replay
from core.events.relay import outbox_lag_seconds
from core.models import DeadLetter, Heartbeat, OutboxEvent, ProcessedEvent


class ReadOnlyInline(admin.TabularInline):
    """Rows shown with their parent (a ledger, an audit trail): staff look, they do not edit."""

    extra = 0
    can_delete = False
    show_change_link = False

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
    list_display = ["name", "last_seen", "count"]


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


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = [
        "event_type",
        "subscriber",
        "error",
        "attempts",
        "last_failed_at",
        "replayed_at",
        "resolved_at",
    ]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter), "subscriber", "event_type"]
    search_fields = ["event_id", "error"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay"]

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
