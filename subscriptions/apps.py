from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"

    def ready(self) -> None:
        from payments import purposes
        from subscriptions.purposes import SubscriptionPurpose

        purposes.register(SubscriptionPurpose())
