from django.apps import AppConfig
from django.db.models.signals import post_migrate


def rules_install(**kwargs) -> None:
    """A Rule row per rule in code, with its defaults; staff's changes are never overwritten."""
    from notifications.models import Rule
    from notifications.rules import RULES

    existing = set(Rule.objects.values_list("key", flat=True))
    Rule.objects.bulk_create(
        [
            Rule(key=spec.key, channels=list(spec.channels), template=spec.template)
            for spec in RULES.values()
            if spec.key not in existing
        ]
    )


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from core import events, metrics
        from notifications.event_schemas import SCHEMAS
        from notifications.metrics import collect

        post_migrate.connect(rules_install, sender=self, dispatch_uid="notifications.rules_install")
        metrics.register("notifications", collect)
        for event_type, schema in SCHEMAS.items():
            events.register_event_type(event_type, source="notifications", schema=schema)
