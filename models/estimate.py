"""ETAs, progress and delivery risk, derived from the live state of lines and work orders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from models.live import LiveState, Update

# Below this share of the planned rate a line counts as running slow (a risk reason).
SLOW_SHARE = 0.85
MIN_RATE_UPH = 1e-6


def parse_ts(value: Any) -> datetime | None:
    """An RFC 3339 string from the live state as an aware datetime (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def iso(value: datetime | None) -> str | None:
    """An aware datetime as RFC 3339 with 'Z'."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def end_of_day(day: date | str) -> datetime:
    """The instant a promised date ends (UTC): a promise for the 10th holds until midnight."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime.combine(d + timedelta(days=1), time(0), tzinfo=UTC)


def promise_day(end: datetime) -> date:
    """The date a promise must name for work ending at ``end`` (a partial day counts): the
    inverse of ``end_of_day``."""
    return (end.astimezone(UTC) - timedelta(microseconds=1)).date()


def planned_rate(wo: Mapping[str, Any]) -> float | None:
    """Units per hour the plan assumed for a work order."""
    start, end = parse_ts(wo.get("planned_start")), parse_ts(wo.get("planned_end"))
    if start is None or end is None or end <= start:
        return None
    return float(wo["qty"]) / ((end - start).total_seconds() / 3600)


def line_etas(
    line: Mapping[str, Any], wos: Mapping[str, dict[str, Any]], now: datetime
) -> dict[str, datetime]:
    """The ETA of every unfinished work order in a line's queue, chained in plan order."""
    out: dict[str, datetime] = {}
    t = now
    for wo_id in line.get("queue") or []:
        wo = wos.get(wo_id)
        if wo is None or wo.get("status") in ("done", "cancelled"):
            continue
        remaining = max(0.0, float(wo["qty"]) - float(wo.get("good") or 0))
        started = wo.get("status") == "running"
        rate = (
            (wo.get("rate_uph") if started else None) or planned_rate(wo) or line.get("nominal_uph")
        )
        rate = max(float(rate or MIN_RATE_UPH), MIN_RATE_UPH)
        planned_start = parse_ts(wo.get("planned_start"))
        start = t if started or planned_start is None else max(t, planned_start)
        t = start + timedelta(hours=remaining / rate)
        out[wo_id] = t
    return out


def order_summary(
    order: Mapping[str, Any],
    wos: Sequence[Mapping[str, Any]],
    lines: Mapping[str, Mapping[str, Any]],
    etas: Mapping[str, datetime],
) -> dict[str, Any]:
    """An order's live fields: status, progress, ETA, risk and the reason for it."""
    active = [w for w in wos if w.get("status") != "cancelled"]
    if order.get("status") == "cancelled" or not active:
        return {
            "progress": 0.0,
            "eta": None,
            "risk": "on_track",
            "risk_reason": None,
            "risk_cause": None,
        }
    qty = sum(float(w["qty"]) for w in active)
    good = sum(min(float(w.get("good") or 0), float(w["qty"])) for w in active)
    progress = round(good / qty, 4) if qty else 0.0
    if all(w.get("status") == "done" for w in active):
        return {
            "status": "completed",
            "progress": 1.0,
            "eta": order.get("eta"),
            "risk": "done",
            "risk_reason": None,
            "risk_cause": None,
        }
    pending = [(etas[w["id"]], w) for w in active if w["id"] in etas]
    status = "in_progress" if good > 0 else order.get("status", "open")
    if not pending:
        return {
            "status": status,
            "progress": progress,
            "eta": None,
            "risk": "on_track",
            "risk_reason": None,
            "risk_cause": None,
        }
    eta, last = max(pending, key=lambda p: p[0])
    promised = order.get("promised_date")
    risk, reason, cause = "on_track", None, None
    if promised and eta > end_of_day(promised):
        risk = "at_risk"
        why, cause = _cause(last, lines)
        reason = f"ETA {eta:%Y-%m-%d %H:%M} after promise {promised}: {why}"
    return {
        "status": status,
        "progress": progress,
        "eta": iso(eta),
        "risk": risk,
        "risk_reason": reason,
        "risk_cause": cause,
    }


def _cause(
    wo: Mapping[str, Any], lines: Mapping[str, Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Why a work order runs late: the text, and the same as ``{"code", ...}`` for screens
    that word it in their own language."""
    line_id = wo.get("line")
    line = lines.get(line_id or "") or {}
    if line.get("state") == "down":
        reason = line.get("reason") or "no reason given"
        return f"line {line_id} is down ({reason})", {
            "code": "line_down",
            "line": line_id,
            "reason": reason,
        }
    if line.get("state") == "unavailable":
        return f"line {line_id} stopped reporting", {"code": "line_silent", "line": line_id}
    planned = planned_rate(wo)
    observed = wo.get("rate_uph")
    if planned and observed and observed < SLOW_SHARE * planned:
        return f"line {line_id} runs at {observed:.0f}/h, plan {planned:.0f}/h", {
            "code": "line_slow",
            "line": line_id,
            "observed": round(observed),
            "planned": round(planned),
        }
    return f"capacity on line {line_id}", {"code": "capacity", "line": line_id}


def estimate(
    live: LiveState,
    now: datetime,
    line_ids: Sequence[str] | None = None,
    overlay: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Update]:
    """Updates for ETAs and risk of the given lines (all when None) and their orders.

    ``overlay`` holds values about to be written (entity, id) -> fields, so a batch can
    estimate from its own results before they reach Redis.
    """
    overlay = overlay or {}
    ids = list(line_ids) if line_ids is not None else live.ids("line")
    lines = {
        i: {**(raw or {}), **overlay.get(("line", i), {})}
        for i, raw in zip(ids, live.get_many("line", ids), strict=True)
    }
    wo_ids = sorted({w for line in lines.values() for w in line.get("queue") or []})
    wos = _with_overlay(live, "work_order", wo_ids, overlay)
    etas: dict[str, datetime] = {}
    updates: list[Update] = []
    for line_id, line in lines.items():
        if not line.get("id"):
            continue
        line_eta = line_etas(line, wos, now)
        etas.update(line_eta)
        current = line.get("work_order")
        updates.append(Update("line", line_id, {"eta": iso(line_eta.get(current or ""))}))
    for wo_id, eta in etas.items():
        updates.append(Update("work_order", wo_id, {"eta": iso(eta)}))
    order_ids = sorted({w["order_id"] for w in wos.values() if w.get("order_id")})
    orders = _with_overlay(live, "order", order_ids, overlay)
    all_wo_ids = sorted({w for o in orders.values() for w in o.get("work_orders") or []})
    missing = [w for w in all_wo_ids if w not in wos]
    wos.update(_with_overlay(live, "work_order", missing, overlay))
    all_lines = dict(lines)
    other_lines = sorted({str(w["line"]) for w in wos.values() if w.get("line")} - set(lines))
    all_lines.update(_with_overlay(live, "line", other_lines, overlay))
    for order_id, order in orders.items():
        order_wos = [wos[w] for w in order.get("work_orders") or [] if w in wos]
        for w in order_wos:
            if w["id"] not in etas and w.get("eta"):
                etas[w["id"]] = parse_ts(w["eta"])  # type: ignore[assignment]
        updates.append(Update("order", order_id, order_summary(order, order_wos, all_lines, etas)))
    return updates


def _with_overlay(
    live: LiveState,
    entity: str,
    ids: Sequence[str],
    overlay: Mapping[tuple[str, str], dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entity_id, raw in zip(ids, live.get_many(entity, ids), strict=True):
        if raw is None and (entity, entity_id) not in overlay:
            continue
        out[entity_id] = {**(raw or {}), **overlay.get((entity, entity_id), {})}
    return out
