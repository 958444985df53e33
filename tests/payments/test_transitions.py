"""Every pair of payment statuses: allowed, repeated (a no-op), or refused with HTTP 409's error."""

import itertools

import pytest

from core.errors import TransitionNotAllowed
from payments.models import Payment
from payments.transitions import PAYMENT, REFUND

ALLOWED = {
    ("created", "pending"),
    ("created", "failed"),
    ("created", "cancelled"),
    ("created", "expired"),
    ("pending", "succeeded"),
    ("pending", "failed"),
    ("pending", "cancelled"),
    ("pending", "expired"),
    ("succeeded", "partially_refunded"),
    ("succeeded", "refunded"),
    ("partially_refunded", "partially_refunded"),
    ("partially_refunded", "refunded"),
}
STATUSES = [s.value for s in Payment.Status]


def test_the_table_knows_every_model_status():
    assert PAYMENT.states == set(STATUSES)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed(current, target):
    PAYMENT.check(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [pair for pair in itertools.product(STATUSES, STATUSES) if pair not in ALLOWED and pair[0] != pair[1]],
)
def test_forbidden(current, target):
    with pytest.raises(TransitionNotAllowed) as caught:
        PAYMENT.check(current, target)
    assert caught.value.status_code == 409
    assert caught.value.extra == {"from": current, "to": target}


@pytest.mark.parametrize("status", [s for s in STATUSES if s != "partially_refunded"])
def test_a_repeated_transition_is_a_no_op(status):
    assert PAYMENT.is_repeat(status, status)


def test_a_second_partial_refund_is_a_real_change():
    assert not PAYMENT.is_repeat("partially_refunded", "partially_refunded")


def test_unknown_status_is_a_programming_error():
    with pytest.raises(ValueError, match="not a payment status"):
        PAYMENT.check("pending", "teleported")


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        ("pending", "succeeded", True),
        ("pending", "failed", True),
        ("succeeded", "failed", False),
        ("failed", "succeeded", False),
    ],
)
def test_refund_transitions(current, target, allowed):
    assert REFUND.allowed(current, target) is allowed
