from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from payments import purposes
        from tests.testapp.purposes import GadgetPurpose

        purposes.register(GadgetPurpose())
