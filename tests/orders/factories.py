"""Catalogue factories for the orders tests."""

from decimal import Decimal

import factory

from orders.models import Category, Product, Variant


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    category = factory.SubFactory(CategoryFactory)
    name = factory.Sequence(lambda n: f"Wooden train {n}")
    slug = factory.Sequence(lambda n: f"wooden-train-{n}")
    description = "A train of beech wood."


class VariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variant

    product = factory.SubFactory(ProductFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = "Ages 3-5"
    price = Decimal("25.00")
    currency = "USD"
    attributes = factory.LazyFunction(lambda: {"age_range": "3-5"})
    stock_on_hand = 10
    low_stock_threshold = 2
