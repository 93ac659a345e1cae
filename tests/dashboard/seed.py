"""A small factory in the live state: four lines, their work orders, orders and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loopline.models.live import LiveState, Update


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def seed(live: LiveState, now: datetime) -> None:
    """Four lines, their work orders, five orders and two alerts."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    lines = [
        ("L1", "Line 1 · Press", "running", None, 58.0, 60.0, "WO-1001-1", 0.62),
        ("L2", "Line 2 · CNC", "running", None, 41.5, 45.0, "WO-1002-1", 0.35),
        ("L3", "Line 3 · Assembly", "changeover", "GEAR-A → GEAR-B", None, 80.0, "WO-1003-1", 0.0),
        ("L4", "Line 4 · Paint", "unavailable", None, None, 50.0, None, 0.0),
    ]
    updates: list[Update] = []
    for i, (lid, name, state, reason, rate, nominal, wo_id, frac) in enumerate(lines):
        wo_eta = now + timedelta(hours=1 + i, minutes=17 * i)
        updates.append(
            Update(
                "line",
                lid,
                {
                    "name": name,
                    "site": "plant-1",
                    "state": state,
                    "reason": reason,
                    "since": _iso(now - timedelta(minutes=12 + 25 * i)),
                    "last_seen": _iso(now),
                    "seq": 100 + i,
                    "work_order": wo_id,
                    "rate_uph": rate,
                    "nominal_uph": nominal,
                    "queue": [w for w in (wo_id, f"WO-20{i}1-1") if w],
                    "eta": _iso(wo_eta) if wo_id else None,
                },
            )
        )
        if wo_id:
            qty = 2000 - 250 * i
            updates.append(
                Update(
                    "work_order",
                    wo_id,
                    {
                        "order_id": f"SO-{wo_id[3:7]}",
                        "line": lid,
                        "sku": f"GEAR-{'ABCD'[i]}",
                        "qty": qty,
                        "good": round(qty * frac),
                        "scrap": 3 * i,
                        "status": "running" if state == "running" else "planned",
                        "planned_start": _iso(start + timedelta(minutes=30 * i)),
                        "planned_end": _iso(wo_eta),
                        "rate_uph": rate,
                        "eta": _iso(wo_eta),
                        "progress": frac,
                    },
                )
            )
        nxt = f"WO-20{i}1-1"
        updates.append(
            Update(
                "work_order",
                nxt,
                {
                    "order_id": f"SO-20{i}1",
                    "line": lid,
                    "sku": f"GEAR-{'EFGH'[i]}",
                    "qty": 800,
                    "good": 0,
                    "scrap": 0,
                    "status": "planned",
                    "planned_start": _iso(wo_eta + timedelta(minutes=20)),
                    "planned_end": _iso(wo_eta + timedelta(hours=5)),
                    "rate_uph": None,
                    "eta": None,
                    "progress": 0.0,
                },
            )
        )
    today = now.date()
    orders = [
        ("SO-1001", "Acme Gears", "in_progress", "high", 3, 3, 0.62, "on_track", None),
        (
            "SO-1002",
            "Globex Motors",
            "in_progress",
            "normal",
            2,
            2,
            0.35,
            "at_risk",
            "CNC running below rate",
        ),
        ("SO-1003", "Initech", "open", "rush", 1, 1, 0.0, "late", "Line 3 changeover overran"),
        ("SO-2001", "Umbrella Pumps", "open", "normal", 6, 5, 0.0, "on_track", None),
        ("SO-2011", "Stark Drives", "open", "normal", 9, 8, 0.0, "on_track", None),
    ]
    for oid, customer, status, prio, req, prom, progress, risk, reason in orders:
        updates.append(
            Update(
                "order",
                oid,
                {
                    "customer": customer,
                    "customer_id": f"C-{oid[3:]}",
                    "status": status,
                    "priority": prio,
                    "requested_date": (today + timedelta(days=req)).isoformat(),
                    "promised_date": (today + timedelta(days=prom)).isoformat(),
                    "eta": _iso(now + timedelta(days=prom, hours=-3)),
                    "progress": progress,
                    "risk": risk,
                    "risk_reason": reason,
                    "work_orders": [f"WO-{oid[3:]}-1"],
                },
            )
        )
    updates += [
        Update(
            "alert",
            "A-1",
            {
                "kind": "line_down",
                "severity": "warning",
                "message": "Line 3 changeover is overrunning",
                "entity": "line",
                "entity_id": "L3",
                "status": "open",
                "opened_at": _iso(now - timedelta(minutes=14)),
                "role": "supervisor",
            },
        ),
        Update(
            "alert",
            "A-2",
            {
                "kind": "stale",
                "severity": "info",
                "message": "Line 4 stopped reporting",
                "entity": "line",
                "entity_id": "L4",
                "status": "acked",
                "opened_at": _iso(now - timedelta(hours=1, minutes=5)),
                "role": "supervisor",
            },
        ),
    ]
    live.apply(updates)
