"""Explicit state machines: each app declares which status may follow which.

PAYMENT = Transitions({"created": {"pending", ...}, ...})
if PAYMENT.is_repeat(payment.status, target):
    return payment                    # a repeated transition is a no-op
PAYMENT.check(payment.status, target) # raises TransitionNotAllowed (HTTP 409)
"""

from collections.abc import Iterable, Mapping

from core.errors import TransitionNotAllowed


class Transitions:
    def __init__(self, table: Mapping[str, Iterable[str]], *, name: str, repeatable: Iterable[str] = ()):
        self.name = name
        self.table = {source: frozenset(targets) for source, targets in table.items()}
        # States that may follow themselves as a real change (e.g. a second partial refund).
        self.repeatable = frozenset(repeatable)
        self.states = frozenset(self.table) | {t for targets in self.table.values() for t in targets}

    def allowed(self, current: str, target: str) -> bool:
        return target in self.table.get(current, frozenset())

    def is_repeat(self, current: str, target: str) -> bool:
        """Asked for the state it is already in: a no-op, unless the state is repeatable."""
        return current == target and target not in self.repeatable

    def check(self, current: str, target: str) -> None:
        if target not in self.states:
            raise ValueError(f"{target!r} is not a {self.name} status")
        if not self.allowed(current, target):
            article = "An" if self.name[0] in "aeiou" else "A"
            raise TransitionNotAllowed(
                f"{article} {self.name} cannot go from {current} to {target}.",
                extra={"from": current, "to": target},
            )
