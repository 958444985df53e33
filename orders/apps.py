from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        from orders.purposes import OrderPurpose
        from payments import purposes

        purposes.register(OrderPurpose())
