from django.apps import AppConfig
from django.core.signals import request_finished, request_started
from django.utils.module_loading import autodiscover_modules


def _trust_recent_connections(**kwargs) -> None:
    from core.db import connections_trust_recent

    connections_trust_recent()


def _mark_connections_used(**kwargs) -> None:
    from core.db import connections_mark_used

    connections_mark_used()


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import logging as core_logging
        from core import metrics

        core_logging.connect_celery_signals()
        metrics.connect_celery_signals()  # task retries and failures, counted in Redis
        # After Django's own close_old_connections (connected when django.db was imported).
        request_started.connect(_trust_recent_connections, dispatch_uid="core.db.trust_recent")
        request_finished.connect(_mark_connections_used, dispatch_uid="core.db.mark_used")
        # Every app's event subscribers register now, in web, worker and beat alike.
        autodiscover_modules("subscribers")
        # The other buses (EVENTS_SINKS) are built now, so that a wrong option or URL stops the
        # process at start with the message, not the first delivery.
        from core.events.delivery import sinks

        sinks()
