"""factory_boy factories shared by the tests."""

import factory
from django.contrib.auth.hashers import make_password

from accounts.models import User

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1555010{n:04d}")
    password = factory.LazyFunction(lambda: make_password(PASSWORD))


class StaffFactory(UserFactory):
    email = factory.Sequence(lambda n: f"staff{n}@example.com")
    is_staff = True


class SuperuserFactory(StaffFactory):
    email = factory.Sequence(lambda n: f"admin{n}@example.com")
    is_superuser = True


# --- bookings -------------------------------------------------------------------------------
class ResourceFactory(factory.django.DjangoModelFactory):
    """A hall open every day 09:00-21:00 in Berlin, 40.00 EUR an hour, bookable for 1 to 8 hours."""

    class Meta:
        model = "bookings.Resource"
        skip_postgeneration_save = True

    kind = "hall"
    name = factory.Sequence(lambda n: f"Studio {n}")
    slug = factory.Sequence(lambda n: f"studio-{n}")
    timezone = "Europe/Berlin"
    currency = "EUR"
    price_per_hour = "40.00"
    min_booking_minutes = 60
    max_booking_minutes = 480

    @factory.post_generation
    def hours(resource, create, extracted, **kwargs):
        """hours=[(weekday, "09:00", "21:00"), ...]; default every day 09:00-21:00; hours=[] for none."""
        from bookings.models import OpeningHours

        if not create:
            return
        spans = extracted if extracted is not None else [(day, "09:00", "21:00") for day in range(7)]
        OpeningHours.objects.bulk_create(
            OpeningHours(resource=resource, weekday=day, opens=opens, closes=closes)
            for day, opens, closes in spans
        )


class StaffResourceFactory(ResourceFactory):
    kind = "staff"
    name = factory.Sequence(lambda n: f"Stylist {n}")
    slug = factory.Sequence(lambda n: f"stylist-{n}")
    price_per_hour = None


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "bookings.Service"
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Haircut {n}")
    duration_minutes = 45
    price = "30.00"
    currency = "EUR"

    @factory.post_generation
    def resources(service, create, extracted, **kwargs):
        if create and extracted:
            service.resources.set(extracted)


# --- payments (the test purpose "gadget") ----------------------------------------------------
class GadgetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "testapp.Gadget"

    class Params:
        customer = factory.SubFactory(UserFactory)

    code = factory.Sequence(lambda n: f"g-{n}")
    customer_id = factory.LazyAttribute(lambda gadget: gadget.customer.pk)
    price = "75.00"
    currency = "USD"
