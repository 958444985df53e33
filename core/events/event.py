"""What a subscriber receives: one event, rebuilt from the envelope the relay published."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    source: str
    data: dict[str, Any]

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> "Event":
        return cls(
            id=uuid.UUID(envelope["id"]),
            type=envelope["type"],
            version=envelope["version"],
            occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
            source=envelope["source"],
            data=envelope["data"],
        )
