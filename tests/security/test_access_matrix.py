"""Every customer fenced off: the access-control matrix of the whole API.

The rows are the operations of the OpenAPI schema the project serves, so that a new endpoint
cannot escape: each must be classified in ACCESS (or, with a reason, in EXCEPTIONS), or its
row fails. The columns are the callers:

- another customer (A) on customer B's objects: an object named in the URL is a 404 (the
  project's convention: "not found (or not yours)", so ids cannot be probed), an object named
  in a body is refused the same way (404, or the payment policy's 422 item_not_found); lists
  never show B's objects; staff-only operations are a 403; and nothing of B's changes: every
  row B owns (status, amounts, updated_at...) is the same before and after, no event is
  published, and no answer carries B's data (e-mail, phone, ids of B's objects);
- an anonymous caller: every operation that is not public nor a webhook is a 401 (DRF with
  token authentication first); a webhook unsigned is refused; nothing of B's in any answer;
- B itself, after A was refused: B's own call is answered, which proves A was refused B's
  real object and not a wrong URL;
- staff: B's objects are answered, staff-only operations too, lists show everyone's and
  their filters still select.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.security.conftest import World, call, outbox_seq, schema_example, schema_operations, snapshot
from tests.subscriptions.factories import PlanFactory

OWNED = "owned"  # one customer's object named in the URL: another customer 404, anonymous 401
COLLECTION = "collection"  # the caller's objects (staff: everyone's, unless said otherwise)
CREATE = "create"  # makes something for the caller; a body naming another's object is refused
SELF = "self"  # the caller's own singleton (profile, cart, preferences, token)
STAFF = "staff"  # staff only: a customer gets 403, even on their own object
PUBLIC = "public"  # anyone, without credentials (catalogue, availability, sign-up and log-in)
WEBHOOK = "webhook"  # a provider's call, authenticated by its signature or secret, not a user

Body = Callable[[World], dict]


@dataclass(frozen=True)
class Access:
    kind: str
    # Bodies to send (each a separate attempt); the first JSON example of the schema if none.
    bodies: tuple[Body, ...] = ()
    # COLLECTION: (B's object, its attribute, the JSON field that carries it)
    listed: tuple[str, str, str] | None = None
    # COLLECTION: a filter that selects B's object and one that does not (staff's view)
    filters: tuple[Callable[[World], dict], Callable[[World], dict]] | None = None
    staff_sees_all: bool = True
    refused: tuple[int, ...] = ()  # CREATE/WEBHOOK: what A's (or an unsigned) attempt must get
    answered: tuple[int, ...] = ()  # CREATE/SELF: what A's own call gets


def _status(value):
    return lambda w: {"status": value(w) if callable(value) else value}


HALL_OF_B = {
    "hall_id": lambda w: w.booking.resource_id,
    "start": lambda w: w.booking.starts_at.isoformat(),
    "end": lambda w: w.booking.ends_at.isoformat(),
}
NOTE = (lambda w: {"note": "done by A?"},)

ACCESS: dict[str, Access] = {
    # accounts
    "POST /api/auth/register": Access(
        PUBLIC, bodies=(lambda w: {"email": "new@example.com", "password": "a long enough secret 1"},)
    ),
    "POST /api/auth/token": Access(PUBLIC, bodies=(lambda w: {"email": w.b.email, "password": "wrong"},)),
    "DELETE /api/auth/token": Access(SELF, answered=(204,)),
    "GET /api/auth/me": Access(SELF, answered=(200,)),
    "PATCH /api/auth/me": Access(
        SELF,
        bodies=(lambda w: {"id": w.b.pk, "phone": "+15550999999", "email_opt_out": True},),
        answered=(200,),
    ),
    # bookings
    "GET /api/bookings/resources": Access(PUBLIC),
    "GET /api/bookings/availability": Access(PUBLIC),
    "GET /api/bookings": Access(
        COLLECTION,
        listed=("booking", "public_id", "id"),
        filters=(_status(lambda w: w.booking.status), _status("cancelled")),
    ),
    "POST /api/bookings": Access(
        CREATE, bodies=(lambda w: {k: v(w) for k, v in HALL_OF_B.items()},), refused=(409,)
    ),
    "GET /api/bookings/{booking_id}": Access(OWNED),
    "DELETE /api/bookings/{booking_id}": Access(
        OWNED, bodies=(lambda w: {"reason": "A says so", "refund": False},)
    ),
    "POST /api/bookings/{booking_id}/confirm": Access(STAFF, bodies=(lambda w: {"paid_in_cash": True},)),
    "POST /api/bookings/{booking_id}/complete": Access(STAFF, bodies=NOTE),
    "POST /api/bookings/{booking_id}/no-show": Access(STAFF, bodies=NOTE),
    # orders: the catalogue is public; the cart is the caller's own
    "GET /api/categories": Access(PUBLIC),
    "GET /api/products": Access(PUBLIC),
    "GET /api/products/{slug}": Access(PUBLIC),
    "GET /api/cart": Access(SELF, answered=(200,)),
    "POST /api/cart/items": Access(
        CREATE, bodies=(lambda w: {"variant_id": w.variant.pk, "quantity": 1},), answered=(201,)
    ),
    "PATCH /api/cart/items/{item_id}": Access(OWNED, bodies=(lambda w: {"quantity": 1},)),
    "DELETE /api/cart/items/{item_id}": Access(OWNED),
    # A's cart is empty: checkout must not take B's (which is not)
    "POST /api/checkout": Access(CREATE, answered=(422,)),
    "GET /api/orders": Access(
        COLLECTION,
        listed=("order", "number", "number"),
        filters=(_status(lambda w: w.order.status), _status("cancelled")),
    ),
    "GET /api/orders/{number}": Access(OWNED),
    "GET /api/orders/{number}/audit": Access(OWNED),
    "POST /api/orders/{number}/cancel": Access(OWNED, bodies=(lambda w: {"reason": "A says so"},)),
    "POST /api/orders/{number}/pay": Access(OWNED),
    "POST /api/orders/{number}/fulfil": Access(STAFF),
    # payments
    "GET /api/payments": Access(
        COLLECTION,
        listed=("payment", "public_id", "id"),
        filters=(_status(lambda w: w.payment.status), _status("refunded")),
    ),
    # A pays for B's order, booking or subscription: refused as an unknown item, B's untouched
    "POST /api/payments": Access(
        CREATE,
        bodies=(
            lambda w: (
                schema_example("POST /api/payments") | {"purpose": "order", "purpose_id": w.order.number}
            ),
            lambda w: {"purpose": "booking", "purpose_id": w.booking.public_id},
        ),
        refused=(422,),
    ),
    "POST /api/payments/batch": Access(
        CREATE,
        bodies=(
            lambda w: schema_example("POST /api/payments/batch") | {"item_ids": [w.booking.public_id]},
            lambda w: {"purpose": "order", "item_ids": [w.order.number]},
            lambda w: {"subscription_ids": [w.pending_subscription.public_id]},
        ),
        refused=(404, 422),
    ),
    "GET /api/payments/{payment_id}": Access(OWNED),
    "POST /api/payments/{payment_id}/process": Access(OWNED),
    "POST /api/payments/{payment_id}/refund": Access(
        STAFF, bodies=(lambda w: {"reason": "A wants B's money back"},)
    ),
    "POST /api/payments/webhook/{gateway}": Access(WEBHOOK, refused=(400, 403, 503)),
    # staff see only their own saved methods: a card is nobody else's business
    "GET /api/payment-methods": Access(
        COLLECTION, listed=("method", "public_id", "id"), staff_sees_all=False
    ),
    "DELETE /api/payment-methods/{method_id}": Access(OWNED),
    # subscriptions
    "GET /api/plans": Access(PUBLIC),
    "GET /api/children": Access(COLLECTION, listed=("child", "pk", "id")),
    "POST /api/children": Access(
        CREATE, bodies=(lambda w: {"name": "Mallory", "birth_date": "2021-01-01"},), answered=(201,)
    ),
    "GET /api/children/{child_id}": Access(OWNED),
    "PATCH /api/children/{child_id}": Access(OWNED, bodies=(lambda w: {"name": "Renamed by A"},)),
    "DELETE /api/children/{child_id}": Access(OWNED),
    "GET /api/subscriptions": Access(
        COLLECTION,
        listed=("subscription", "public_id", "id"),
        filters=(lambda w: {"child": w.child.pk}, _status("cancelled")),
    ),
    "POST /api/subscriptions": Access(
        CREATE, bodies=(lambda w: {"child_id": w.child.pk, "plan_id": PlanFactory().pk},), refused=(404,)
    ),
    "GET /api/subscriptions/{subscription_id}": Access(OWNED),
    "POST /api/subscriptions/{subscription_id}/cancel": Access(
        OWNED, bodies=(lambda w: {"at_period_end": False},)
    ),
    "POST /api/subscriptions/{subscription_id}/pause": Access(OWNED),
    "POST /api/subscriptions/{subscription_id}/resume": Access(OWNED),
    "POST /api/subscriptions/{subscription_id}/skip": Access(OWNED),
    "GET /api/invoices": Access(
        COLLECTION,
        listed=("invoice", "number", "id"),
        filters=(_status(lambda w: w.invoice.status), _status("void")),
    ),
    "GET /api/toyboxes": Access(
        COLLECTION,
        listed=("toybox", "public_id", "id"),
        filters=(lambda w: {"child": w.child.pk}, _status("delivered")),
    ),
    "GET /api/toyboxes/{toybox_id}": Access(OWNED),
    # notifications
    "GET /api/notifications": Access(
        COLLECTION,
        listed=("notification", "public_id", "id"),
        filters=(lambda w: {"user": w.b.pk}, lambda w: {"user": w.a.pk}),
    ),
    "GET /api/notifications/{notification_id}": Access(OWNED),
    "POST /api/notifications/{notification_id}/read": Access(OWNED),
    "GET /api/notifications/preferences": Access(SELF, answered=(200,)),
    "PATCH /api/notifications/preferences": Access(
        SELF, bodies=(lambda w: {"timezone": "Europe/Moscow"},), answered=(200,)
    ),
    # Telegram is not configured in tests: 503, still A's own and nothing of B's
    "POST /api/notifications/telegram/link": Access(SELF, answered=(201, 503)),
    "POST /api/notifications/send": Access(
        STAFF, bodies=(lambda w: {"user": w.b.pk, "channel": "inapp", "subject": "Hi", "body": "From A?"},)
    ),
    "POST /api/notifications/webhooks/twilio": Access(
        WEBHOOK, bodies=(lambda w: {"MessageSid": "SM123", "MessageStatus": "failed"},), refused=(403,)
    ),
    "POST /api/notifications/webhooks/telegram": Access(
        WEBHOOK, bodies=(lambda w: {"update_id": 1, "message": {"text": "/start x"}},), refused=(403,)
    ),
    # integrations: the event log and the AsyncAPI document (EVENTS_ASYNCAPI_PUBLIC off: staff)
    "GET /api/integrations/events": Access(STAFF),
    "GET /api/events/asyncapi.json": Access(STAFF),
}

# Operations of the schema deliberately outside the matrix: "METHOD /path" -> why. Empty today;
# an entry here is a decision a reviewer must see, never a way to make the matrix pass.
EXCEPTIONS: dict[str, str] = {}

# Routes under /api/ that the schema does not describe, each with why (every other one must be in it).
UNDOCUMENTED_ROUTES = {
    "/api/schema/": "the OpenAPI document itself (public by design)",
    "/api/docs/": "Swagger UI over that document",
    "/api/redoc/": "ReDoc over that document",
    "/api/{rest}": "the catch-all that answers an unknown API address with a JSON 404",
}
REFUSED_ANONYMOUS = 401  # DRF with TokenAuthentication first: NotAuthenticated with WWW-Authenticate
NOT_YOURS = 404


def of_kind(*kinds: str) -> list[str]:
    return [key for key in schema_operations() if key in ACCESS and ACCESS[key].kind in kinds]


# --- the matrix covers the API ----------------------------------------------------------------
@pytest.mark.parametrize("key", schema_operations())
def test_every_operation_is_classified(key):
    assert (key in ACCESS) != (key in EXCEPTIONS), (
        f"{key} is new (or moved): classify it in ACCESS (owned / collection / create / self / staff / "
        "public / webhook), or list it in EXCEPTIONS with the reason"
    )


def test_no_classification_names_an_operation_the_schema_lacks():
    assert set(ACCESS) | set(EXCEPTIONS) <= set(schema_operations())


def _api_routes(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + _route_text(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _api_routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith("/api/"):
            yield route


def _route_text(pattern) -> str:
    """A route as the schema writes it: "<str:number>" -> "{number}"; the catch-all by hand."""
    text = str(pattern).lstrip("^").rstrip("$")
    if "(?P<rest>" in text:
        return text.replace("(?P<rest>.*)", "{rest}")
    while "<" in text:
        start, end = text.index("<"), text.index(">")
        text = text[:start] + "{" + text[start + 1 : end].split(":")[-1] + "}" + text[end + 1 :]
    return text


def test_every_api_route_is_in_the_schema():
    """A view hidden from the schema (exclude=True) would escape the matrix: it must not exist."""
    documented = {key.split(" ", 1)[1] for key in schema_operations()}
    routes = set(_api_routes(get_resolver().url_patterns, "/"))
    assert routes - documented == set(UNDOCUMENTED_ROUTES)


# --- the callers -------------------------------------------------------------------------------
def prepare(world: World, key: str) -> tuple[str, str, list[dict]]:
    """All of B's objects, the operation's URL on them, and the bodies to send."""
    method, path = key.split(" ", 1)
    access = ACCESS[key]
    world.build_all()
    url = world.url(path)
    bodies = [body(world) for body in access.bodies] or [schema_example(key)]
    return method, url, bodies


def assert_untouched(world: World, before: dict, seq: int, response, *, events: bool = False) -> None:
    assert snapshot(world.b) == before, f"B's rows changed: {response.status_code} {response.content[:300]}"
    if not events:
        assert outbox_seq() == seq, "a refused request published events"


def assert_no_marks(world: World, response, request_text: str) -> None:
    """No data of B's (not sent by the caller itself) in the answer."""
    text = response.content.decode(errors="replace")
    leaked = {mark for mark in world.marks() if mark in text and mark not in request_text}
    assert not leaked, f"the answer carries B's data {leaked}: {text[:500]}"


@pytest.mark.parametrize("key", schema_operations())
def test_an_anonymous_caller_gets_nothing(world, key):
    if key not in ACCESS:
        pytest.skip(f"in EXCEPTIONS: {EXCEPTIONS.get(key)}")
    access = ACCESS[key]
    method, url, bodies = prepare(world, key)
    for body in bodies:
        before, seq = snapshot(world.b), outbox_seq()
        response = call(None, method, url, body)
        if access.kind == PUBLIC:
            assert response.status_code not in (401, 403) and response.status_code < 500, response.content
        elif access.kind == WEBHOOK:
            assert response.status_code in access.refused, response.content
        else:
            assert response.status_code == REFUSED_ANONYMOUS, response.content
        assert_untouched(world, before, seq, response, events=access.kind == PUBLIC)
        assert_no_marks(world, response, url + str(body))


@pytest.mark.parametrize("key", of_kind(OWNED, COLLECTION, CREATE, SELF, STAFF))
def test_another_customer_is_fenced_off(world, key):
    access = ACCESS[key]
    method, url, bodies = prepare(world, key)
    if access.kind == COLLECTION:
        return _list_shows_only_the_callers(world, key, url)
    for body in bodies:
        before, seq = snapshot(world.b), outbox_seq()
        response = call(world.a, method, url, body)
        expected = {
            OWNED: (NOT_YOURS,),
            STAFF: (403,),
            CREATE: access.refused or access.answered,
            SELF: access.answered,
        }[access.kind]
        assert response.status_code in expected, (response.status_code, response.content[:500])
        assert_untouched(world, before, seq, response, events=bool(access.answered))
        assert_no_marks(world, response, url + str(body))
    if access.kind == STAFF:  # not even on B's own object
        response = call(world.b, method, url, bodies[0])
        assert response.status_code == 403, response.content
        assert_untouched(world, before, seq, response)
    if access.kind == OWNED:  # A was refused B's real object, not a wrong URL
        response = call(world.b, method, url, bodies[0])
        assert response.status_code not in (401, 403, 404) and response.status_code < 500, response.content


@pytest.mark.parametrize(
    "key", ["POST /api/checkout", "POST /api/bookings", "POST /api/subscriptions", "POST /api/payments/batch"]
)
def test_another_customers_idempotency_key_replays_nothing(world, key):
    """A replays B's request with B's Idempotency-Key: a key is the caller's, so A does not get
    B's stored answer (B's order, booking, subscription or payment), and B's rows stay."""
    world.build_all()
    idempotency_key, body = world.keys[key]
    before, seq = snapshot(world.b), outbox_seq()
    response = call(world.a, *key.split(" ", 1), body, key=idempotency_key)
    assert response.status_code in (*ACCESS[key].refused, *ACCESS[key].answered), response.content
    assert_untouched(world, before, seq, response)
    assert_no_marks(world, response, str(body))


@pytest.mark.parametrize("url", ["/api/subscriptions", "/api/toyboxes", "/api/notifications"])
def test_a_filter_on_another_customers_object_answers_as_on_none(world, url):
    """The convention (one answer for "not yours" and "no such", so ids cannot be probed) holds
    for list filters too: naming B's child or B's user is answered as naming nobody."""
    param, b_value = ("user", world.b.pk) if url == "/api/notifications" else ("child", world.child.pk)
    on_b = call(world.a, "GET", url, params={param: b_value})
    on_none = call(world.a, "GET", url, params={param: 10**9})
    assert (on_b.status_code, on_b.json().get("results")) == (
        on_none.status_code,
        on_none.json().get("results"),
    )


def _ids(response, json_field: str) -> list[str]:
    assert response.status_code == 200, response.content
    return [str(item[json_field]) for item in response.json()["results"]]


def _list_shows_only_the_callers(world: World, key: str, url: str) -> None:
    thing, attribute, json_field = ACCESS[key].listed
    b_id = str(getattr(getattr(world, thing), attribute))
    assert b_id in _ids(call(world.b, "GET", url), json_field), "B's own list misses B's object"
    for params in [{}, *(f(world) for f in ACCESS[key].filters or ())]:
        response = call(world.a, "GET", url, params=params)
        if params and response.status_code == 400:  # a filter naming B's object is refused: fine
            continue
        assert b_id not in _ids(response, json_field), f"A's list shows B's object with {params}"
        assert_no_marks(world, response, str(params))


STAFF_READS = [key for key in of_kind(OWNED) if key.startswith("GET ")]


@pytest.mark.parametrize("key", [*STAFF_READS, *of_kind(COLLECTION, STAFF)])
def test_staff_are_answered(world, key):
    access = ACCESS[key]
    method, url, bodies = prepare(world, key)
    if access.kind == COLLECTION:
        thing, attribute, json_field = access.listed
        b_id = str(getattr(getattr(world, thing), attribute))
        assert (b_id in _ids(call(world.staff, "GET", url), json_field)) == access.staff_sees_all
        if access.filters:
            selecting, other = (f(world) for f in access.filters)
            assert b_id in _ids(call(world.staff, "GET", url, params=selecting), json_field), selecting
            assert b_id not in _ids(call(world.staff, "GET", url, params=other), json_field), other
        return
    response = call(world.staff, method, url, bodies[0])
    answered = response.status_code == 200 if method == "GET" else response.status_code not in (401, 403, 404)
    assert answered and response.status_code < 500, (response.status_code, response.content[:500])
