"""Demo catalogue for `manage.py load_demo` (make run): a few toys and books, in stock."""

from decimal import Decimal

from django.db import transaction

from orders.catalogue import catalogue_changed
from orders.models import Category, Product, ProductImage, Variant

CATALOGUE = {
    ("Toys", "toys"): [
        (
            "Beech wood train",
            "beech-train",
            [("TRAIN-S", "Small", "24.00", 12), ("TRAIN-L", "Large", "39.00", 3)],
        ),
        ("Alphabet blocks", "alphabet-blocks", [("BLOCKS-26", "26 blocks", "18.50", 20)]),
    ],
    ("Books", "books"): [
        ("Atlas of animals", "atlas-of-animals", [("ATLAS-EN", "English", "15.00", 8)]),
    ],
}


def load(*, stdout) -> None:
    created = 0
    with transaction.atomic():
        for (category_name, category_slug), products in CATALOGUE.items():
            category, _ = Category.objects.get_or_create(slug=category_slug, defaults={"name": category_name})
            for name, slug, variants in products:
                product, new = Product.objects.get_or_create(
                    slug=slug,
                    defaults={"name": name, "category": category, "description": f"{name}, for ages 3-7."},
                )
                if not new:
                    continue
                created += 1
                ProductImage.objects.create(product=product, url=f"https://picsum.photos/seed/{slug}/600/400")
                for sku, variant_name, price, stock in variants:
                    Variant.objects.create(
                        product=product,
                        sku=sku,
                        name=variant_name,
                        price=Decimal(price),
                        attributes={"age_range": "3-7"},
                        stock_on_hand=stock,
                    )
        if created:
            catalogue_changed(product_ids=Product.objects.values_list("pk", flat=True), reason="demo")
    stdout.write(f"demo catalogue:     {Product.objects.count()} products (GET /api/products)")
