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
