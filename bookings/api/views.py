from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from bookings import services
from bookings.api import examples
from bookings.api.serializers import (
    AvailabilityQuerySerializer,
    AvailabilitySerializer,
    BookingCancelSerializer,
    BookingConfirmSerializer,
    BookingCreateSerializer,
    BookingNoteSerializer,
    BookingSerializer,
    ResourceSerializer,
)
from bookings.availability import STEP, DayAvailability
from bookings.models import Booking, Resource, Service
from bookings.selectors import availability_for, bookings_visible_to
from core.drf import CurrencyFilter, FilterSet
from core.errors import InvalidInput
from core.idempotency import HEADER, idempotent
from payments.services import payment_checkout_open

IDEMPOTENCY = OpenApiParameter(HEADER, str, OpenApiParameter.HEADER, required=True)
ERRORS = {
    400: OpenApiResponse(description="invalid input: {code, message, extra.fields}"),
    404: OpenApiResponse(description="not found (or not yours)"),
    409: OpenApiResponse(description="slot_taken, or a transition the booking's status does not allow"),
    422: OpenApiResponse(description="a business rule: in_the_past, outside_opening_hours, too_far_ahead..."),
}
CREATE_ERRORS = {
    400: ERRORS[400],
    409: OpenApiResponse(
        description="slot_taken, or a request with this Idempotency-Key is still running "
        "(request_in_progress)"
    ),
    422: OpenApiResponse(
        description="in_the_past, outside_opening_hours, too_far_ahead..., the gateway refused the "
        "checkout, or the Idempotency-Key was used with another body (idempotency_key_reused)"
    ),
    503: OpenApiResponse(description="the payment gateway is unavailable; retry with the same key"),
}


class ResourceListView(ListAPIView):
    """GET /api/bookings/resources: what can be booked (halls, staff), with hours and services."""

    permission_classes = [AllowAny]
    serializer_class = ResourceSerializer
    queryset = Resource.objects.filter(active=True).prefetch_related("opening_hours", "services")
    filterset_fields = ["kind"]


class AvailabilityView(APIView):
    """GET /api/bookings/availability: free intervals and 15-minute start times per local day.

    A public read that keeps answering without Redis: the project's rate limits fail open
    and count each request once, by address or by user (core.drf).
    """

    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[AvailabilityQuerySerializer],
        responses={200: AvailabilitySerializer, 400: ERRORS[400]},
    )
    def get(self, request):
        query = AvailabilityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:  # get(), not first(): no ORDER BY name for one row by its key
            resource = Resource.objects.get(pk=params["resource_id"], active=True)
        except Resource.DoesNotExist:
            raise InvalidInput(
                f"hall_id: no bookable resource with id {params['resource_id']}.",
                code="unknown_resource",
                extra={"fields": {"hall_id": ["unknown resource"]}},
            ) from None
        service = None
        if params.get("service_id") is not None:
            service = Service.objects.filter(pk=params["service_id"], active=True, resources=resource).first()
            if service is None:
                raise InvalidInput(
                    f"service_id: {resource.name} offers no service with id {params['service_id']}.",
                    extra={"fields": {"service_id": ["not offered by this resource"]}},
                )
        try:
            result = availability_for(
                resource=resource,
                start_date=params["start_date"],
                end_date=params["end_date"],
                service=service,
            )
        except OverflowError:  # the serializer bounds the window; a last guard for the calendar's ends
            raise InvalidInput(
                "end_date: out of range.", extra={"fields": {"end_date": ["out of range"]}}
            ) from None
        return Response(
            {
                "resource_id": resource.pk,
                "service_id": service.pk if service else None,
                "timezone": resource.timezone,
                "start_date": result.start_date,
                "end_date": result.end_date,
                "slot_minutes": STEP.seconds // 60,
                "duration_minutes": result.duration.seconds // 60 + result.duration.days * 24 * 60,
                "days": [_day_json(day, resource.tz) for day in result.days],
            }
        )


# "HH:MM:00" of each 15-minute step of a day: most local times of a response are written
# from this table (a few hundred per 30 days) rather than by astimezone() and isoformat().
_GRID_TIMES = [f"{m // 60:02d}:{m % 60:02d}:00" for m in range(0, 24 * 60, STEP.seconds // 60)]


def _day_json(day: DayAvailability, tz: tzinfo) -> dict:
    """A day's free intervals and starts as local ISO 8601 times with their offset."""
    if not day.free:
        return {"date": day.date.isoformat(), "free": [], "starts": []}
    offset = day.free[0].start.astimezone(tz).utcoffset()
    if day.free[-1].end.astimezone(tz).utcoffset() != offset:  # the clocks change in between
        return {
            "date": day.date.isoformat(),
            "free": [
                {"start": i.start.astimezone(tz).isoformat(), "end": i.end.astimezone(tz).isoformat()}
                for i in day.free
            ],
            "starts": [s.astimezone(tz).isoformat() for s in day.starts],
        }
    local = _fixed_offset_formatter(day.date, offset)
    return {
        "date": day.date.isoformat(),
        "free": [{"start": local(i.start), "end": local(i.end)} for i in day.free],
        "starts": [local(s) for s in day.starts],
    }


def _fixed_offset_formatter(day: date, offset: timedelta):
    """Instants as local ISO 8601 text at a fixed UTC offset, as isoformat() writes them.

    An instant on the grid of `day` is the date, its step's time and the offset (about a
    third of astimezone() and isoformat()); any other one (off the grid, the next day's
    midnight) goes the long way.
    """
    fixed = timezone(offset)
    suffix = datetime(2000, 1, 1, tzinfo=fixed).isoformat()[19:]  # "+01:00", as isoformat() writes it
    prefix = f"{day.isoformat()}T"
    midnight = datetime.combine(day, time(0), tzinfo=UTC) - offset  # the local 00:00 at this offset
    steps = len(_GRID_TIMES)

    def local(moment: datetime) -> str:
        step, rest = divmod(moment - midnight, STEP)
        if not rest and 0 <= step < steps:
            return prefix + _GRID_TIMES[step] + suffix
        return moment.astimezone(fixed).isoformat()

    return local


class BookingFilter(FilterSet):
    currency = CurrencyFilter()

    class Meta:
        model = Booking
        fields = ["status", "payment_status", "resource", "currency"]


class BookingListCreateView(ListAPIView):
    """GET: your bookings (staff: all). POST: hold a slot and open its payment's checkout."""

    serializer_class = BookingSerializer
    filterset_class = BookingFilter
    ordering_fields = {"start": "starts_at", "created_at": "created_at"}
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # building the schema: no user
            return Booking.objects.none()
        return bookings_visible_to(self.request.user).order_by("-created_at")

    @extend_schema(
        request=BookingCreateSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: BookingSerializer, **CREATE_ERRORS},
        examples=examples.BOOKING_CREATE,
    )
    def post(self, request):
        data = BookingCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data

        def hold(record) -> None:
            booking = services.booking_hold(
                customer_id=request.user.pk,
                resource_id=fields["resource_id"],
                service_id=fields.get("service_id"),
                starts_at=fields["start"],
                ends_at=fields.get("end"),
                payment_kind=fields["payment_kind"],
                notes=fields["notes"],
            )
            record.resource_id = str(booking.pk)

        def open_checkout(record) -> Response:
            # A gateway refusal cancels the payment (422); payment.cancelled then releases the slot.
            booking = Booking.objects.select_related("resource").get(pk=record.resource_id)
            local_start = booking.starts_at.astimezone(booking.resource.tz)
            payment_checkout_open(
                payment_id=booking.payment_id,
                return_url=fields["return_url"],
                description=f"{booking.resource.name}, {local_start:%Y-%m-%d %H:%M}",
                customer_email=request.user.email,
            )
            booking = bookings_visible_to(request.user).get(pk=booking.pk)
            return Response(BookingSerializer(booking).data, status=status.HTTP_201_CREATED)

        return idempotent(
            request, scope="bookings.create", payload=request.data, prepare=hold, handler=open_checkout
        )


class BookingLookup:
    """The booking of the URL's `booking_id` that the caller may see (a mixin: it answers no method).

    Each view says which methods it answers, so an action answers only its own (others: 405).
    """

    def get_object(self) -> Booking:
        return get_object_or_404(bookings_visible_to(self.request.user), public_id=self.kwargs["booking_id"])


class BookingDetailView(BookingLookup, APIView):
    @extend_schema(responses={200: BookingSerializer, 404: ERRORS[404]})
    def get(self, request, booking_id: str):
        return Response(BookingSerializer(self.get_object()).data)

    @extend_schema(
        summary="Cancel the booking",
        description=(
            "Frees the slot. What was paid online is refunded in full when cancelled at least "
            "BOOKING_FREE_CANCEL_HOURS before the start, and not at all after; staff may decide "
            "otherwise with `refund`. Fields may be sent as JSON or as query parameters."
        ),
        request=BookingCancelSerializer,
        parameters=[BookingCancelSerializer],
        responses={200: BookingSerializer, **ERRORS, 413: None, 415: None},  # it may have a body
    )
    def delete(self, request, booking_id: str):
        booking = self.get_object()
        data = BookingCancelSerializer(data=request.data or request.query_params)
        data.is_valid(raise_exception=True)
        services.booking_cancel(
            booking_id=booking.pk,
            actor_id=request.user.pk,
            by_staff=request.user.is_staff,
            refund=data.validated_data["refund"],
            reason=data.validated_data["reason"],
        )
        return Response(BookingSerializer(self.get_object()).data)


class StaffBookingActionView(BookingLookup, APIView):
    """Staff: one service call on a booking, with the body `input_serializer` validates."""

    permission_classes = [IsAdminUser]
    input_serializer = BookingNoteSerializer
    service: Callable[..., object]  # not `action`: DRF and drf-spectacular read that name

    def post(self, request, booking_id: str):
        booking = self.get_object()
        data = self.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        type(self).service(booking_id=booking.pk, actor_id=request.user.pk, **data.validated_data)
        return Response(BookingSerializer(self.get_object()).data)


@extend_schema_view(
    post=extend_schema(request=BookingConfirmSerializer, responses={200: BookingSerializer, **ERRORS})
)
class BookingConfirmView(StaffBookingActionView):
    """Staff: confirm a booking, e.g. paid at the desk."""

    input_serializer = BookingConfirmSerializer
    service = services.booking_confirm


@extend_schema_view(
    post=extend_schema(request=BookingNoteSerializer, responses={200: BookingSerializer, **ERRORS})
)
class BookingCompleteView(StaffBookingActionView):
    """Staff: the customer came; the booking is completed."""

    service = services.booking_complete


@extend_schema_view(
    post=extend_schema(request=BookingNoteSerializer, responses={200: BookingSerializer, **ERRORS})
)
class BookingNoShowView(StaffBookingActionView):
    """Staff: the customer did not come."""

    service = services.booking_no_show
