from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from core import metrics
        from payments.metrics import collect

        metrics.register("payments", collect)
