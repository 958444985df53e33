"""GET /api/integrations/events: the event log, for staff and integrations."""

import django_filters
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser

from core.models import OutboxEvent


class EventFilter(django_filters.FilterSet):
    type = django_filters.CharFilter(help_text="Exact type, or a prefix ending in '.': payment.")
    aggregate_id = django_filters.CharFilter()
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    published = django_filters.BooleanFilter(field_name="published_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = OutboxEvent
        fields = ["type", "aggregate_id", "occurred_after", "occurred_before", "published"]

    def filter_queryset(self, queryset):
        event_type = self.form.cleaned_data.pop("type", None)
        if event_type:
            queryset = (
                queryset.filter(type__startswith=event_type)
                if event_type.endswith(".")
                else queryset.filter(type=event_type)
            )
        return super().filter_queryset(queryset)


class EventSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="event_id")

    class Meta:
        model = OutboxEvent
        fields = [
            "id",
            "type",
            "version",
            "occurred_at",
            "source",
            "aggregate_id",
            "data",
            "published_at",
            "attempts",
            "last_error",
        ]


class EventListView(ListAPIView):
    """Events newest first; filter by type (or `payment.` prefix), aggregate id and time."""

    permission_classes = [IsAdminUser]
    serializer_class = EventSerializer
    filterset_class = EventFilter
    queryset = OutboxEvent.objects.order_by("-seq")
