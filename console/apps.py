from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The staff dashboard on the admin index: read-only figures over every app, each linking to
    the admin list it counts. No models; it sits above every app (it reads them all)."""

    name = "console"
    verbose_name = "Staff console"
