from django.contrib.auth import get_user_model
from django.db import models


class Effect(models.Model):
    """One row per subscriber run that committed: duplicates here mean an effect happened twice."""

    event_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=100)
    subscriber = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.subscriber} <- {self.event_id}"


class Gadget(models.Model):
    """Something payments can take money for in its own tests (the purpose "gadget")."""

    class Status(models.TextChoices):
        FOR_SALE = "for_sale"
        SOLD = "sold"
        WITHDRAWN = "withdrawn"

    code = models.CharField(max_length=100, unique=True)
    # A plain id: this app has no migrations, so its tables are made before the users' table.
    customer_id = models.IntegerField()
    price = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FOR_SALE)

    def __str__(self) -> str:
        return self.code

    @property
    def customer(self):
        return get_user_model().objects.get(pk=self.customer_id)
