from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import logging as core_logging

        core_logging.connect_celery_signals()
        # Every app's event subscribers register now, in web, worker and beat alike.
        autodiscover_modules("subscribers")
