"""GET /api/integrations/events: the event log, for staff and integrations.

Paged by cursor over `seq`, the log's order: pages stay consistent while events are added,
and no page counts the whole table. `?ordering=seq` reads the log oldest first, so an
integration can follow it page by page (`next`) and resume from the last cursor it kept.
"""

import django_filters
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser

from core.drf import BooleanFilter, CursorPagination, FilterSet, IsoDateTimeFilter
from core.models import OutboxEvent


class EventFilter(FilterSet):
    type = django_filters.CharFilter(help_text="Exact type, or a prefix ending in '.': payment.")
    aggregate_id = django_filters.CharFilter()
    occurred_after = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    published = BooleanFilter(field_name="published_at", lookup_expr="isnull", exclude=True)

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
            "seq",
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
        extra_kwargs = {"seq": {"help_text": "The event's place in the log: later events have larger ones"}}


class EventPagination(CursorPagination):
    ordering = "-seq"
    page_size = 50


class EventListView(ListAPIView):
    """Events newest first (`ordering=seq`: oldest first), a page at a time by cursor; filter by
    type (or a `payment.` prefix), aggregate id, time and whether the relay published them."""

    permission_classes = [IsAdminUser]
    serializer_class = EventSerializer
    filterset_class = EventFilter
    pagination_class = EventPagination
    ordering_fields = ["seq"]
    ordering = ["-seq"]
    queryset = OutboxEvent.objects.all()
