"""ETAs, progress and delivery risk, derived from the live state of lines and work orders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from loopline.models.clock import end_of_day, iso, parse_ts
from loopline.models.live import LiveState, Update
from loopline.models.quarantine import Findings, count_problem

# Below this share of the planned rate a line counts as running slow (a risk reason).
SLOW_SHARE = 0.85
MIN_RATE_UPH = 1e-6
ESTIMATE_STEP = "estimate"


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
    findings: Findings | None = None,
) -> list[Update]:
    """Updates for ETAs and risk of the given lines (all when None) and their orders.

    ``overlay`` holds values about to be written (entity, id) -> fields, so a batch can
    estimate from its own results before they reach Redis. A work order whose counters
    are not believable, a line or an order whose estimate fails, is left as it was and
    named in ``findings`` (step ``estimate``); the others are estimated.
    """
    findings = findings if findings is not None else Findings()
    overlay = overlay or {}
    ids = list(line_ids) if line_ids is not None else live.ids("line")
    lines = {
        i: {**(raw or {}), **overlay.get(("line", i), {})}
        for i, raw in zip(ids, live.get_many("line", ids), strict=True)
    }
    wo_ids = sorted({w for line in lines.values() for w in _queue(line)})
    wos = _with_overlay(live, "work_order", wo_ids, overlay)
    order_ids = sorted({str(w["order_id"]) for w in wos.values() if w.get("order_id")})
    orders = _with_overlay(live, "order", order_ids, overlay)
    all_wo_ids = sorted({w for o in orders.values() for w in _listed(o.get("work_orders"))})
    missing = [w for w in all_wo_ids if w not in wos]
    wos.update(_with_overlay(live, "work_order", missing, overlay))
    believable = _believable(wos, findings)
    etas: dict[str, datetime] = {}
    updates: list[Update] = []
    for line_id, line in lines.items():
        if not line.get("id"):
            continue
        with findings.guard(ESTIMATE_STEP, "line", line_id):
            line_eta = line_etas(line, believable, now)
            current = line.get("work_order")
            eta_update = Update("line", line_id, {"eta": iso(line_eta.get(str(current or "")))})
            etas.update(line_eta)
            updates.append(eta_update)
    for wo_id, eta in etas.items():
        updates.append(Update("work_order", wo_id, {"eta": iso(eta)}))
    all_lines = dict(lines)
    other_lines = sorted({str(w["line"]) for w in wos.values() if w.get("line")} - set(lines))
    all_lines.update(_with_overlay(live, "line", other_lines, overlay))
    for order_id, order in orders.items():
        listed = [w for w in _listed(order.get("work_orders")) if w in wos]
        if any(w not in believable for w in listed):
            continue  # its progress would count what is not believable
        with findings.guard(ESTIMATE_STEP, "order", order_id):
            order_wos = [wos[w] for w in listed]
            known = {
                w: parse_ts(wos[w]["eta"]) for w in listed if w not in etas and wos[w].get("eta")
            }
            etas.update({w: eta for w, eta in known.items() if eta is not None})
            summary = order_summary(order, order_wos, all_lines, etas)
            updates.append(Update("order", order_id, summary))
    findings.finished(ESTIMATE_STEP)
    return updates


def _believable(wos: dict[str, dict[str, Any]], findings: Findings) -> dict[str, dict[str, Any]]:
    """The work orders whose counters can be believed; the others are flagged."""
    out = {}
    for wo_id, wo in wos.items():
        if problem := count_problem(wo, wo.get("qty")):
            findings.flag(
                ESTIMATE_STEP, "work_order", wo_id, problem, order=str(wo.get("order_id") or "")
            )
        else:
            out[wo_id] = wo
    return out


def _queue(line: Mapping[str, Any]) -> list[str]:
    return _listed(line.get("queue"))


def _listed(value: Any) -> list[str]:
    """A list of ids from the live state (anything else counts as none)."""
    return [str(v) for v in value] if isinstance(value, list) else []


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
