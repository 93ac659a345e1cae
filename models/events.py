"""The event vocabulary: the canonical CRM order event (DESIGN.md, "CRM → Loopline")."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Priority = Literal["normal", "high", "rush"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CustomerIn(_Strict):
    id: Name
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class OrderLineIn(_Strict):
    sku: Name
    qty: int = Field(gt=0, le=10_000_000)


MAX_VERSION = 2**63 - 1  # a 64-bit column (epoch-ms change times fit)


class OrderIn(_Strict):
    id: Name
    version: int = Field(ge=0, le=MAX_VERSION)
    customer: CustomerIn
    lines: list[OrderLineIn] = Field(min_length=1, max_length=500)
    requested_date: date
    priority: Priority = "normal"
    sales_rep: str | None = Field(default=None, max_length=100)
    # The CRM's word that the order reached its customer (models/followup.py); when
    # ``delivered_at`` is missing, the event's ``occurred_at`` is the delivery time.
    status: Literal["delivered"] | None = None
    delivered_at: datetime | None = None


class CancelledOrderIn(_Strict):
    id: Name
    version: int = Field(ge=0, le=MAX_VERSION)


class OrderUpserted(_Strict):
    type: Literal["order.upserted"]
    occurred_at: datetime
    order: OrderIn


class OrderCancelled(_Strict):
    type: Literal["order.cancelled"]
    occurred_at: datetime
    order: CancelledOrderIn


class CrmEvent(BaseModel):
    """Either kind of CRM order event, told apart by ``type``."""

    event: Annotated[OrderUpserted | OrderCancelled, Field(discriminator="type")]


def parse_crm_event(data: object) -> OrderUpserted | OrderCancelled:
    """Validate a decoded CRM event body; raises pydantic.ValidationError naming fields."""
    return CrmEvent.model_validate({"event": data}).event


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "order.lines[0].qty", "message": ...}`` for a 422."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if loc[:1] == ["event"]:
            loc = loc[2:] if len(loc) > 1 and str(loc[1]).startswith("order.") else loc[1:]
        out.append({"field": format_path(loc) or "body", "message": err["msg"]})
    return out


def format_path(loc: list[str | int]) -> str:
    """``["order", "lines", 0, "qty"]`` -> ``order.lines[0].qty``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
