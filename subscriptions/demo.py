"""Demo data for `manage.py load_demo` (make run): plans, toys with age ranges and tags, and the
demo customer's two children (idempotent)."""

from datetime import date
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from orders.catalogue import catalogue_changed
from orders.models import Category, Product, Variant
from subscriptions.models import Child, Plan

PLANS = [
    ("Little explorers", "little-explorers", "29.00", 1, 3, 12, 48),
    ("Curious minds", "curious-minds", "35.00", 1, 4, 36, 120),
    ("Curious minds, quarterly", "curious-minds-quarterly", "95.00", 3, 4, 36, 120),
]
# name, slug, sku, price, stock, ages in months, tags
TOYS = [
    ("Stacking rings", "stacking-rings", "BOX-RINGS", "9.00", 40, (12, 36), ["motor", "wooden"]),
    ("Shape sorter", "shape-sorter", "BOX-SORTER", "12.00", 40, (12, 42), ["puzzles", "wooden"]),
    ("Bath boats", "bath-boats", "BOX-BOATS", "8.00", 40, (12, 48), ["water", "motor"]),
    ("Wooden xylophone", "wooden-xylophone", "BOX-XYLO", "14.00", 30, (18, 60), ["music", "wooden"]),
    ("Farm puzzle", "farm-puzzle", "BOX-FARM", "10.00", 30, (24, 60), ["puzzles", "animals"]),
    ("Magnetic tiles", "magnetic-tiles", "BOX-TILES", "22.00", 30, (36, 120), ["stem", "building"]),
    ("Crystal growing kit", "crystal-kit", "BOX-CRYSTAL", "16.00", 25, (72, 144), ["stem", "science"]),
    ("Kalimba", "kalimba", "BOX-KALIMBA", "18.00", 25, (60, 144), ["music"]),
    ("Bug viewer", "bug-viewer", "BOX-BUGS", "11.00", 25, (48, 120), ["science", "animals", "outdoors"]),
    ("Marble run", "marble-run", "BOX-MARBLE", "25.00", 25, (48, 144), ["stem", "building"]),
    ("Story cubes", "story-cubes", "BOX-STORY", "9.50", 25, (60, 144), ["stories", "puzzles"]),
    ("Watercolour set", "watercolours", "BOX-PAINT", "12.50", 25, (36, 144), ["art"]),
]
CHILDREN = [("Mia", date(2021, 3, 14), ["music", "animals"]), ("Leo", date(2018, 9, 2), ["stem", "science"])]


def load(*, stdout) -> None:
    with transaction.atomic():
        for name, slug, price, months, toys, age_min, age_max in PLANS:
            Plan.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "price": Decimal(price),
                    "currency": "USD",
                    "period_months": months,
                    "toys_per_box": toys,
                    "age_min_months": age_min,
                    "age_max_months": age_max,
                    "description": f"{toys} toys {'every month' if months == 1 else 'every 3 months'}.",
                },
            )
        category, _ = Category.objects.get_or_create(slug="toybox-toys", defaults={"name": "Toybox toys"})
        new = []
        for name, slug, sku, price, stock, (age_min, age_max), tags in TOYS:
            product, created = Product.objects.get_or_create(
                slug=slug, defaults={"name": name, "category": category}
            )
            if created:
                Variant.objects.create(
                    product=product,
                    sku=sku,
                    price=Decimal(price),
                    stock_on_hand=stock,
                    age_min_months=age_min,
                    age_max_months=age_max,
                    tags=tags,
                )
                new.append(product.pk)
        if new:
            catalogue_changed(product_ids=new, reason="demo")
        customer = get_user_model().objects.filter(email="customer@example.com").first()
        if customer is not None:
            for name, birth_date, interests in CHILDREN:
                Child.objects.get_or_create(
                    customer=customer, name=name, defaults={"birth_date": birth_date, "interests": interests}
                )
    stdout.write(
        f"demo subscriptions: {Plan.objects.count()} plans (GET /api/plans), "
        f"{len(TOYS)} toys with age ranges, 2 children of customer@example.com (GET /api/children)"
    )
