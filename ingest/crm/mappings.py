"""Per-CRM mappings: a source's webhook body -> the canonical order event (DESIGN.md).

A new CRM plugs in at ``POST /api/v1/crm/{source}/events`` by adding a function to
``MAPPINGS`` (and, optionally, a field-name translation to ``FIELD_NAMES`` so a 422 names
the fields the way that CRM spells them). Mappings reshape only; the values are validated
afterwards by ``models.events.parse_crm_event``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

CANONICAL = "canonical"
CANONICAL_TYPES = ("order.upserted", "order.cancelled")


class UnknownSource(LookupError):
    """No mapping is registered for this CRM source."""

    def __init__(self, source: str) -> None:
        super().__init__(f"unknown CRM source '{source}'")
        self.source = source


class MappingError(ValueError):
    """A source body whose shape cannot be mapped; ``errors`` name the source's own fields."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    """The canonical event needs no mapping."""
    return body


# flatcrm: a CRM whose deals are flat records, e.g.
# {"event": "deal.updated", "deal_id": 2001, "rev": 3, "account_id": "C-9",
#  "account_name": "Acme Gears", "items": [{"product_code": "GEAR-A", "quantity": 500}],
#  "need_by": "2026-12-10", "urgency": "normal", "owner": "zhang.wei",
#  "updated_at": "2026-11-28T08:00:00Z"}
FLATCRM_EVENTS = {"deal.updated": "order.upserted", "deal.deleted": "order.cancelled"}
FLATCRM_URGENCY = {"normal": "normal", "high": "high", "rush": "rush"}


def flatcrm(body: dict[str, Any]) -> dict[str, Any]:
    """A flat ``deal.updated`` / ``deal.deleted`` record -> the canonical event."""
    kind = body.get("event")
    if kind not in FLATCRM_EVENTS:
        raise MappingError(
            [{"field": "event", "message": f"must be one of {', '.join(FLATCRM_EVENTS)}"}]
        )
    deal_id = body.get("deal_id")
    order: dict[str, Any] = {
        # Why str(): flat CRMs number their deals; the canonical order id is a string.
        "id": str(deal_id) if isinstance(deal_id, int | str) else deal_id,
        "version": body.get("rev"),
    }
    if FLATCRM_EVENTS[kind] == "order.upserted":
        items = body.get("items")
        order |= {
            "customer": {"id": body.get("account_id"), "name": body.get("account_name")},
            "lines": [_flatcrm_item(item) for item in items] if isinstance(items, list) else items,
            "requested_date": body.get("need_by"),
            "priority": _flatcrm_urgency(body.get("urgency")),
            "sales_rep": body.get("owner"),
        }
    return {
        "type": FLATCRM_EVENTS[kind],
        # flatcrm bodies may omit the change time; then the receipt time stands in.
        "occurred_at": body.get("updated_at") or datetime.now(UTC).isoformat(),
        "order": order,
    }


def _flatcrm_urgency(urgency: Any) -> Any:
    if urgency is None:
        return "normal"
    return FLATCRM_URGENCY.get(urgency, urgency) if isinstance(urgency, str) else urgency


def _flatcrm_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item  # left for the canonical validation to name
    return {"sku": item.get("product_code"), "qty": item.get("quantity")}


# Canonical field path -> the source's own spelling, tried in order (first match wins).
FLATCRM_FIELDS: list[tuple[str, str]] = [
    (r"^order\.lines(\[\d+\])\.sku$", r"items\1.product_code"),
    (r"^order\.lines(\[\d+\])\.qty$", r"items\1.quantity"),
    (r"^order\.lines(\[\d+\])$", r"items\1"),
    (r"^order\.lines$", "items"),
    (r"^order\.customer\.id$", "account_id"),
    (r"^order\.customer\.name$", "account_name"),
    (r"^order\.customer$", "account_id"),
    (r"^order\.id$", "deal_id"),
    (r"^order\.version$", "rev"),
    (r"^order\.requested_date$", "need_by"),
    (r"^order\.priority$", "urgency"),
    (r"^order\.sales_rep$", "owner"),
    (r"^occurred_at$", "updated_at"),
    (r"^type$", "event"),
]

MAPPINGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    CANONICAL: canonical,
    "flatcrm": flatcrm,
}

FIELD_NAMES: dict[str, list[tuple[str, str]]] = {
    "flatcrm": FLATCRM_FIELDS,
}


def get_mapping(source: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The mapping registered for ``source``; raises UnknownSource."""
    try:
        return MAPPINGS[source]
    except KeyError:
        raise UnknownSource(source) from None


def source_field(source: str, path: str) -> str:
    """A canonical field path (``order.lines[0].qty``) as ``source`` names it."""
    for pattern, repl in FIELD_NAMES.get(source, []):
        renamed, n = re.subn(pattern, repl, path)
        if n:
            return renamed
    return path
