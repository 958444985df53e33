"""factory_boy factories for subscriptions: plans, children, and toys with age ranges."""

from datetime import date

import factory
from dateutil.relativedelta import relativedelta

from tests.factories import UserFactory


def born_months_ago(months: int) -> date:
    return date.today() - relativedelta(months=months, days=3)


class PlanFactory(factory.django.DjangoModelFactory):
    """A monthly plan of 3 toys for children of 1 to 10 years, 30.00 USD."""

    class Meta:
        model = "subscriptions.Plan"

    name = factory.Sequence(lambda n: f"Plan {n}")
    slug = factory.Sequence(lambda n: f"plan-{n}")
    price = "30.00"
    currency = "USD"
    period_months = 1
    toys_per_box = 3
    age_min_months = 12
    age_max_months = 120


class ChildFactory(factory.django.DjangoModelFactory):
    """A child of 4 years who likes STEM toys."""

    class Meta:
        model = "subscriptions.Child"

    customer = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Child {n}")
    birth_date = factory.LazyFunction(lambda: born_months_ago(48))
    interests = factory.LazyFunction(lambda: ["stem"])


class ToyFactory(factory.django.DjangoModelFactory):
    """A toy (a variant of its own product) for ages 2 to 8, 20 in stock."""

    class Meta:
        model = "orders.Variant"

    product = factory.SubFactory("tests.orders.factories.ProductFactory")
    sku = factory.Sequence(lambda n: f"TOY-{n:05d}")
    name = ""
    price = "10.00"
    currency = "USD"
    stock_on_hand = 20
    age_min_months = 24
    age_max_months = 96
    tags = factory.LazyFunction(list)
