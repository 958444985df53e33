"""Staff views: the delivery log (filters, search, resend), the rules (enable, channels,
template) with a preview rendered from a real object, templates written in the admin, and
customers' preferences."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin import ObjectActionsAdmin, ReadOnlyAdmin, object_action
from core.errors import ApplicationError
from notifications import services
from notifications.models import CHANNEL_NAMES, CHANNELS, MessageTemplate, Notification, Preference, Rule
from notifications.preview import PreviewError, preview
from notifications.rules import RULES


@admin.register(Notification)
class NotificationAdmin(ObjectActionsAdmin, ReadOnlyAdmin):
    list_display = ["public_id", "created_at", "rule", "channel", "user", "address", "status", "attempts"]
    list_filter = ["status", "channel", "rule", "category", "critical", "language", "created_at"]
    search_fields = ["public_id", "address", "provider_id", "event_id", "user__email", "subject"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_select_related = ["user"]
    actions = ["resend"]
    change_actions = ("resend_one",)

    def has_resend_permission(self, request) -> bool:
        return self.has_action_permission(request, "change")

    @admin.action(description="Resend the selected messages (a new attempt each)", permissions=["resend"])
    def resend(self, request, queryset):
        sent = 0
        for notification in queryset.order_by("pk"):
            try:
                services.notification_resend(notification=notification)
            except ApplicationError as exc:
                self.message_user(request, f"{notification}: {exc.message}", messages.ERROR)
                continue
            sent += 1
        if sent:
            self.message_user(request, f"{sent} sent again; each is a new row of the log.", messages.SUCCESS)

    @object_action(
        label="Resend",
        description="Send this message again to the same address, as a new row of the log",
        shown=lambda n: n.status not in (Notification.Status.QUEUED, Notification.Status.SENDING),
    )
    def resend_one(self, request, notification):
        copy = self.run_service(
            request,
            lambda: services.notification_resend(notification=notification),
            lambda c: f"Sent again as {c.public_id}.",
        )
        if copy is not None:
            return redirect("admin:notifications_notification_change", copy.pk)
        return None


class RuleForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=CHANNELS, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = Rule
        fields = ["enabled", "channels", "template"]


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = [
        "key",
        "event_type",
        "audience",
        "critical",
        "enabled",
        "channels",
        "template",
        "preview_link",
    ]
    list_filter = ["enabled"]
    readonly_fields = ["key", "event_type", "audience", "category", "critical", "description"]
    fields = [*readonly_fields, "enabled", "channels", "template"]

    def has_add_permission(self, request) -> bool:
        return False  # rules are declared in code (notifications.rules)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _spec(self, rule: Rule):
        return RULES.get(rule.key)

    @admin.display(description="event")
    def event_type(self, rule: Rule) -> str:
        spec = self._spec(rule)
        return spec.event_type if spec else "-"

    @admin.display(description="audience")
    def audience(self, rule: Rule) -> str:
        spec = self._spec(rule)
        return spec.audience if spec else "-"

    @admin.display(description="category")
    def category(self, rule: Rule) -> str:
        spec = self._spec(rule)
        return spec.category if spec else "-"

    @admin.display(description="critical", boolean=True)
    def critical(self, rule: Rule) -> bool:
        spec = self._spec(rule)
        return bool(spec and spec.critical)

    @admin.display(description="what it tells")
    def description(self, rule: Rule) -> str:
        spec = self._spec(rule)
        return spec.description if spec else "not declared in code any more: it sends nothing"

    @admin.display(description="preview")
    def preview_link(self, rule: Rule) -> str:
        return format_html(
            '<a href="{}">preview</a>', reverse("admin:notifications_rule_preview", args=[rule.pk])
        )

    def get_urls(self):
        own = [
            path(
                "<int:rule_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="notifications_rule_preview",
            )
        ]
        return own + super().get_urls()

    def preview_view(self, request, rule_id: int):
        """The rule's messages on every channel, rendered with a real object (the latest, or one named)."""
        rule = get_object_or_404(Rule, pk=rule_id)
        if not self.has_view_permission(request, rule):
            return self.admin_site.login(request)
        language = request.GET.get("language") or settings.LANGUAGE_CODE
        if language not in dict(settings.LANGUAGES):
            language = settings.LANGUAGE_CODE
        object_id = request.GET.get("object", "").strip()
        parts, error = {}, ""
        try:
            parts = preview(rule.key, language, object_id)
        except PreviewError as exc:
            error = str(exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Preview: {rule.key}",
            "rule": rule,
            "language": language,
            "languages": settings.LANGUAGES,
            "object_id": object_id,
            "error": error,
            "parts": [(name, parts.get(name)) for name in CHANNEL_NAMES if name in parts],
        }
        return TemplateResponse(request, "admin/notifications/preview.html", context)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    """A template written here replaces the file of the same name and language (in the
    workers within notifications.cache.CACHE_SECONDS of the save)."""

    list_display = ["name", "language", "updated_at"]
    list_filter = ["language"]
    search_fields = ["name", "source"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        rules = Rule.objects.filter(template=obj.name)
        for rule in rules:
            url = reverse("admin:notifications_rule_preview", args=[rule.pk]) + f"?language={obj.language}"
            self.message_user(request, format_html('Preview it as <a href="{}">{}</a>.', url, rule.key))


@admin.register(Preference)
class PreferenceAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "quiet_hours_start",
        "quiet_hours_end",
        "timezone",
        "telegram_chat_id",
        "updated_at",
    ]
    search_fields = ["user__email", "telegram_chat_id"]
    raw_id_fields = ["user"]
