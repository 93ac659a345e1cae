"""The KPI read model: the managers' figures, week by week, from the system of record.

One code path for ``GET /api/v1/kpi`` and the ``/kpi`` screen. Every figure is computed for
the whole period and for each ISO week in it (Monday 00:00 UTC; the current week runs to
``now``):

* **on-time delivery**: share of the orders delivered in the week that arrived by the
  day the customer asked for (``requested_date``);
* **lead time**: days from the order (``created_at``) to its delivery, average and p90
  (nearest rank);
* **promise reliability**: share delivered by the day Loopline promised, and the average
  days delivered after the promise (negative: early);
* **inventory turns**: per material, what the week's deliveries used (their lines times
  the BOM), annualised, over the average stock of the week; stock in the past is worked
  back from today's on-hand, adding back what was used since and taking out what was
  received since (Loopline keeps no stock history of its own). The figure is the mean
  over the materials used;
* **OEE per line**, from a pluggable ``OeeSource``; the default is the OEE the worker
  stores per line and shift (``models/oee.py``: availability, performance, quality and
  OEE), summed over the shifts that started in the window (time-weighted, not an average
  of percentages). Where a line has no stored shift in a window, that window falls back
  to what the records allow: availability (calendar time less the time a line-down alert
  was active) and quality (good over good and scrap of the work orders delivered), with
  performance and OEE unknown (None). Each line says how many shifts it was measured on;
* **satisfaction**: the mean score (0-100) of the satisfaction follow-ups completed;
* **open alerts**: those active at the end of each week, and by age now.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, NotRequired, Protocol, TypedDict, get_args

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from loopline.models.estimate import iso
from loopline.models.followup import SATISFACTION, FollowupTask, OrderDelivery
from loopline.models.oee import period_figures
from loopline.models.oee_records import ShiftOee
from loopline.models.records import (
    Alert,
    BomLine,
    Line,
    Material,
    Order,
    OrderLine,
    PurchaseOrder,
    WorkOrder,
)

PeriodWeeks = Literal[4, 8, 13, 26, 52]  # the period selector's choices
PERIODS_WEEKS: tuple[int, ...] = get_args(PeriodWeeks)
DEFAULT_WEEKS: PeriodWeeks = 8
WEEKS_PER_YEAR = 52.0
P90 = 0.9
DAY_S = 86_400.0
# Ages of the open alerts, upper bounds in hours (the last bucket is open-ended).
AGE_BUCKETS_H: tuple[tuple[str, float], ...] = (
    ("lt_1h", 1.0),
    ("1h_8h", 8.0),
    ("8h_24h", 24.0),
    ("1d_7d", 7 * 24.0),
    ("gt_7d", math.inf),
)
ACTIVE = ("open", "acked")

KpiKey = Literal[
    "on_time_delivery",
    "lead_time_avg",
    "lead_time_p90",
    "promise_reliability",
    "promise_slip",
    "inventory_turns",
    "satisfaction",
    "open_alerts",
]
Better = Literal["higher", "lower"]


class Point(TypedDict):
    """One week of a figure: ``value`` is None when the week had nothing to measure."""

    week: str  # the Monday, YYYY-MM-DD
    value: float | None
    count: int  # how many things were measured (orders, scores, alerts, materials)


class Kpi(TypedDict):
    """A figure over the whole period, with its weekly trend."""

    key: str
    value: float | None
    count: int
    unit: str  # pct | days | turns | score | alerts
    better: str  # higher | lower
    trend: list[Point]


class LineMeasure(TypedDict):
    """What an OEE source says of one line over one window (None: not measured)."""

    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    # How many stored shifts it stands on (0 or absent: not measured from shifts).
    shifts: NotRequired[int]


class LineKpi(TypedDict):
    line: str
    name: str
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    shifts: int  # stored shifts measured over the period (0: from the records only)
    trend: list[Point]  # of ``measure``; ``count``: the week's stored shifts


class OeeReport(TypedDict):
    measure: str  # oee | availability: what each line's trend and headline show
    source: str
    lines: list[LineKpi]


class AgeBucket(TypedDict):
    bucket: str
    count: int
    critical: int


class KpiReport(TypedDict):
    """Everything the KPI screen and ``GET /api/v1/kpi`` show."""

    generated_at: str
    period_weeks: int
    start: str
    end: str
    weeks: list[str]
    kpis: list[Kpi]
    oee: OeeReport
    alerts_by_age: list[AgeBucket]


Window = tuple[datetime, datetime]
Measured = tuple[float | None, int]  # a value and how many things it measured


class OeeSource(Protocol):
    """Measures each line over each window (the same order), keyed by line id."""

    name: str

    def __call__(
        self, session: Session, windows: Sequence[Window]
    ) -> dict[str, list[LineMeasure]]: ...


# -- weeks and small statistics ----------------------------------------------------------
def week_start(moment: datetime) -> datetime:
    """The Monday 00:00 UTC of the ISO week ``moment`` falls in."""
    day = moment.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)


def week_windows(now: datetime, weeks: int) -> list[Window]:
    """The last ``weeks`` ISO weeks up to ``now``, oldest first; the last ends at ``now``."""
    current = week_start(now)
    starts = [current - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    return [(s, min(s + timedelta(weeks=1), now)) for s in starts]


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile by nearest rank (the smallest value with ``q`` of all at or below)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def share(flags: Sequence[bool]) -> float | None:
    """Percent true, or None for no flags."""
    return 100.0 * sum(flags) / len(flags) if flags else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _index(moment: datetime, windows: Sequence[Window]) -> int | None:
    for i, (start, end) in enumerate(windows):
        if start <= moment < end or (i == len(windows) - 1 and moment == end):
            return i
    return None


# -- the data read once ------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveredOrder:
    """One delivered order, plainly (golden tests build these by hand)."""

    order_id: str
    ordered_at: datetime
    delivered_at: datetime
    requested: date
    promised: date | None
    lines: tuple[tuple[str, int], ...] = ()  # (sku, qty)


def _delivered(session: Session, start: datetime, end: datetime) -> list[DeliveredOrder]:
    rows = session.execute(
        select(
            Order.id,
            Order.created_at,
            OrderDelivery.delivered_at,
            Order.requested_date,
            Order.promised_date,
        )
        .join(OrderDelivery, OrderDelivery.order_id == Order.id)
        .where(OrderDelivery.delivered_at >= start, OrderDelivery.delivered_at <= end)
    ).all()
    lines: dict[str, list[tuple[str, int]]] = defaultdict(list)
    ids = [r[0] for r in rows]
    for chunk in range(0, len(ids), 500):
        for order_id, sku, qty in session.execute(
            select(OrderLine.order_id, OrderLine.sku, OrderLine.qty).where(
                OrderLine.order_id.in_(ids[chunk : chunk + 500])
            )
        ):
            lines[order_id].append((sku, qty))
    return [
        DeliveredOrder(oid, created, delivered, requested, promised, tuple(lines[oid]))
        for oid, created, delivered, requested, promised in rows
    ]


# -- each figure -------------------------------------------------------------------------
def _kpi(
    key: KpiKey,
    unit: str,
    better: Better,
    windows: Sequence[Window],
    whole: tuple[float | None, int],
    weekly: Sequence[tuple[float | None, int]],
    digits: int = 2,
) -> Kpi:
    return {
        "key": key,
        "value": _round(whole[0], digits),
        "count": whole[1],
        "unit": unit,
        "better": better,
        "trend": [
            {"week": w[0].date().isoformat(), "value": _round(v, digits), "count": n}
            for w, (v, n) in zip(windows, weekly, strict=True)
        ],
    }


def delivery_kpis(orders: Sequence[DeliveredOrder], windows: Sequence[Window]) -> list[Kpi]:
    """On-time delivery, lead time (average, p90) and promise reliability (kept, slip)."""
    by_week: list[list[DeliveredOrder]] = [[] for _ in windows]
    for o in orders:
        i = _index(o.delivered_at, windows)
        if i is not None:
            by_week[i].append(o)
    every = [o for week in by_week for o in week]

    def on_time(os: Sequence[DeliveredOrder]) -> tuple[float | None, int]:
        return share([o.delivered_at.date() <= o.requested for o in os]), len(os)

    def lead(os: Sequence[DeliveredOrder]) -> list[float]:
        return [(o.delivered_at - o.ordered_at).total_seconds() / DAY_S for o in os]

    def kept(os: Sequence[DeliveredOrder]) -> tuple[float | None, int]:
        promised = [o for o in os if o.promised is not None]
        return share([o.delivered_at.date() <= o.promised for o in promised if o.promised]), len(
            promised
        )

    def slip(os: Sequence[DeliveredOrder]) -> tuple[float | None, int]:
        days = [float((o.delivered_at.date() - o.promised).days) for o in os if o.promised]
        return mean(days), len(days)

    def avg_lead(os: Sequence[DeliveredOrder]) -> tuple[float | None, int]:
        return mean(lead(os)), len(os)

    def p90_lead(os: Sequence[DeliveredOrder]) -> tuple[float | None, int]:
        return nearest_rank(lead(os), P90), len(os)

    figures: list[tuple[KpiKey, str, Better, Callable[[Sequence[DeliveredOrder]], Measured]]] = [
        ("on_time_delivery", "pct", "higher", on_time),
        ("lead_time_avg", "days", "lower", avg_lead),
        ("lead_time_p90", "days", "lower", p90_lead),
        ("promise_reliability", "pct", "higher", kept),
        ("promise_slip", "days", "lower", slip),
    ]
    return [
        _kpi(key, unit, better, windows, f(every), [f(w) for w in by_week], 1)
        for key, unit, better, f in figures
    ]


def inventory_turns(
    orders: Sequence[DeliveredOrder],
    windows: Sequence[Window],
    *,
    bom: dict[str, dict[str, float]],
    on_hand: dict[str, float],
    receipts: Sequence[tuple[str, datetime, float]],
    now: datetime,
) -> Kpi:
    """Annualised turns per material (use over average stock), the mean over materials."""
    used: list[dict[str, float]] = [defaultdict(float) for _ in windows]
    use_at: list[tuple[datetime, str, float]] = []
    for o in orders:
        i = _index(o.delivered_at, windows)
        for sku, qty in o.lines:
            for material, per_unit in bom.get(sku, {}).items():
                if i is not None:
                    used[i][material] += per_unit * qty
                use_at.append((o.delivered_at, material, per_unit * qty))

    # Per material, the moments of use (+) and receipt (-) in time order with running sums,
    # so the stock at any moment is one bisection.
    moves: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for at, material, amount in use_at:
        if at <= now:
            moves[material].append((at, amount))
    for material, at, amount in receipts:
        if at <= now:
            moves[material].append((at, -amount))
    times: dict[str, list[datetime]] = {}
    after: dict[str, list[float]] = {}  # after[m][k]: the sum of the moves from k on
    for material, ms in moves.items():
        ms.sort(key=lambda m: m[0])
        times[material] = [at for at, _ in ms]
        sums = [0.0] * (len(ms) + 1)
        for k in range(len(ms) - 1, -1, -1):
            sums[k] = sums[k + 1] + ms[k][1]
        after[material] = sums

    def stock_at(material: str, moment: datetime) -> float:
        """Today's stock with what was used since added back and what came in since removed."""
        if material not in times:
            return on_hand.get(material, 0.0)
        return on_hand.get(material, 0.0) + after[material][bisect_left(times[material], moment)]

    def turns(i_weeks: Sequence[int]) -> tuple[float | None, int]:
        per_material: list[float] = []
        for material in {m for i in i_weeks for m in used[i]}:
            use = sum(used[i][material] for i in i_weeks)
            span_s = sum((windows[i][1] - windows[i][0]).total_seconds() for i in i_weeks)
            start, end = windows[i_weeks[0]][0], windows[i_weeks[-1]][1]
            stock = (stock_at(material, start) + stock_at(material, end)) / 2
            if use <= 0 or stock <= 0 or span_s <= 0:
                continue
            per_material.append(use / stock * (WEEKS_PER_YEAR * 7 * DAY_S / span_s))
        return mean(per_material), len(per_material)

    return _kpi(
        "inventory_turns",
        "turns",
        "higher",
        windows,
        turns(list(range(len(windows)))),
        [turns([i]) for i in range(len(windows))],
        1,
    )


def satisfaction(scores: Sequence[tuple[datetime, int]], windows: Sequence[Window]) -> Kpi:
    """The mean satisfaction score of the follow-ups completed, by week of completion."""
    weekly: list[list[float]] = [[] for _ in windows]
    for at, score in scores:
        i = _index(at, windows)
        if i is not None:
            weekly[i].append(float(score))
    every = [s for w in weekly for s in w]
    return _kpi(
        "satisfaction",
        "score",
        "higher",
        windows,
        (mean(every), len(every)),
        [(mean(w), len(w)) for w in weekly],
        1,
    )


@dataclass(frozen=True)
class AlertSpan:
    """When an alert was active (``resolved`` None: still active)."""

    opened: datetime
    resolved: datetime | None
    severity: str = "warning"
    kind: str = ""
    line: str | None = None


def open_alerts(
    spans: Sequence[AlertSpan], windows: Sequence[Window], now: datetime
) -> tuple[Kpi, list[AgeBucket]]:
    """Alerts active at the end of each week, the number active now, and their ages."""

    def active_at(moment: datetime) -> list[AlertSpan]:
        return [
            a for a in spans if a.opened <= moment and (a.resolved is None or a.resolved > moment)
        ]

    weekly = [(float(len(active_at(end))), len(active_at(end))) for _, end in windows]
    current = [a for a in spans if a.resolved is None]
    buckets: list[AgeBucket] = []
    lower = 0.0
    for name, upper in AGE_BUCKETS_H:
        inside = [a for a in current if lower <= _age_h(a, now) < upper]
        buckets.append(
            {
                "bucket": name,
                "count": len(inside),
                "critical": sum(a.severity == "critical" for a in inside),
            }
        )
        lower = upper
    kpi = _kpi(
        "open_alerts", "alerts", "lower", windows, (float(len(current)), len(current)), weekly, 0
    )
    return kpi, buckets


def _age_h(alert: AlertSpan, now: datetime) -> float:
    """Hours since the alert opened (0 for one stamped ahead of ``now``: the demo's alert
    rules run on its fast clock)."""
    return max(0.0, (now - alert.opened).total_seconds() / 3600)


# -- OEE ---------------------------------------------------------------------------------
class AvailabilityFromRecords:
    """The default OEE source: availability and quality from the records, no performance.

    Availability is calendar time less the time a ``line_down`` alert was active (the
    alert opens a few minutes into a stop, so short stops are not counted); quality is the
    good share of the work orders of the orders delivered in the window.
    """

    name = "records"

    def __call__(self, session: Session, windows: Sequence[Window]) -> dict[str, list[LineMeasure]]:
        if not windows:
            return {}
        first, last = min(w[0] for w in windows), max(w[1] for w in windows)
        lines = list(session.scalars(select(Line.id).order_by(Line.id)))
        downs = session.execute(
            select(Alert.entity_id, Alert.opened_at, Alert.resolved_at).where(
                Alert.kind == "line_down",
                Alert.opened_at < last,
                or_(Alert.resolved_at.is_(None), Alert.resolved_at > first),
            )
        ).all()
        made = session.execute(
            select(WorkOrder.line_id, WorkOrder.good, WorkOrder.scrap, OrderDelivery.delivered_at)
            .join(OrderDelivery, OrderDelivery.order_id == WorkOrder.order_id)
            .where(
                and_(OrderDelivery.delivered_at >= first, OrderDelivery.delivered_at <= last),
                WorkOrder.line_id.is_not(None),
            )
        ).all()
        out: dict[str, list[LineMeasure]] = {}
        for line in lines:
            spans = [(o, r or last) for lid, o, r in downs if lid == line]
            measures: list[LineMeasure] = []
            for start, end in windows:
                span_s = (end - start).total_seconds()
                down_s = sum(
                    max(0.0, (min(r, end) - max(o, start)).total_seconds()) for o, r in spans
                )
                good = sum(g for lid, g, _, at in made if lid == line and start <= at <= end)
                bad = sum(s for lid, _, s, at in made if lid == line and start <= at <= end)
                measures.append(
                    {
                        "availability": max(0.0, 1 - down_s / span_s) if span_s > 0 else None,
                        "performance": None,
                        "quality": good / (good + bad) if good + bad > 0 else None,
                        "oee": None,
                    }
                )
            out[line] = measures
        return out


class StoredShiftOee:
    """The default OEE source: the OEE per line and shift the worker stores
    (``models/oee.py``), over the shifts that started in each window, summed as
    ``oee_for_line`` sums them; a line's window with no stored shift falls back to
    ``fallback`` (availability and quality from the records)."""

    name = "shifts"

    def __init__(self, fallback: OeeSource | None = None) -> None:
        self.fallback = fallback or AvailabilityFromRecords()

    def __call__(self, session: Session, windows: Sequence[Window]) -> dict[str, list[LineMeasure]]:
        if not windows:
            return {}
        first, last = min(w[0] for w in windows), max(w[1] for w in windows)
        lines = list(session.scalars(select(Line.id).order_by(Line.id)))
        shifts: dict[str, list[ShiftOee]] = defaultdict(list)
        for row in session.scalars(
            select(ShiftOee)
            .where(ShiftOee.shift_start >= first, ShiftOee.shift_start < last)
            .order_by(ShiftOee.line_id, ShiftOee.shift_start)
        ):
            shifts[row.line_id].append(row)
        backup: dict[str, list[LineMeasure]] | None = None
        out: dict[str, list[LineMeasure]] = {}
        for line in sorted({*lines, *shifts}):
            rows = shifts.get(line, [])
            measures: list[LineMeasure] = []
            for i, (start, end) in enumerate(windows):
                inside = [r for r in rows if start <= r.shift_start < end]
                figures = period_figures(inside)
                if figures is None:
                    if backup is None:  # read only when some window needs it
                        backup = self.fallback(session, windows)
                    m = (backup.get(line) or [_UNKNOWN] * len(windows))[i]
                    measures.append({**m, "shifts": 0})
                    continue
                measures.append(
                    {
                        "availability": figures.availability,
                        "performance": figures.performance,
                        "quality": figures.quality,
                        "oee": figures.oee,
                        "shifts": len(inside),
                    }
                )
            out[line] = measures
        return out


_UNKNOWN: LineMeasure = {"availability": None, "performance": None, "quality": None, "oee": None}


def oee_report(session: Session, windows: Sequence[Window], source: OeeSource) -> OeeReport:
    """Each line's measures over the period and its trend (OEE when the source has it,
    else availability)."""
    period = (windows[0][0], windows[-1][1])
    measured = source(session, [*windows, period])
    names = {i: n for i, n in session.execute(select(Line.id, Line.name))}
    has_oee = any(m["oee"] is not None for ms in measured.values() for m in ms)
    measure: Literal["oee", "availability"] = "oee" if has_oee else "availability"
    lines: list[LineKpi] = []
    for line_id in sorted(measured):
        ms = measured[line_id]
        whole = ms[-1]
        lines.append(
            {
                "line": line_id,
                "name": names.get(line_id, line_id),
                "availability": _pct(whole["availability"]),
                "performance": _pct(whole["performance"]),
                "quality": _pct(whole["quality"]),
                "oee": _pct(whole["oee"]),
                "shifts": _shifts(whole),
                "trend": [
                    {
                        "week": w[0].date().isoformat(),
                        "value": _pct(m[measure]),
                        "count": _shifts(m),
                    }
                    for w, m in zip(windows, ms[:-1], strict=True)
                ],
            }
        )
    return {"measure": measure, "source": source.name, "lines": lines}


def _shifts(m: LineMeasure) -> int:
    """How many stored shifts a measure stands on (0: a source that does not say)."""
    return m.get("shifts", 0)


def _pct(share_: float | None) -> float | None:
    return None if share_ is None else round(100.0 * share_, 1)


# -- the report --------------------------------------------------------------------------
# The OEE source every reader uses (one code path for the screen and the API).
OEE_SOURCE: OeeSource = StoredShiftOee()


def kpi_report(
    session: Session,
    *,
    now: datetime,
    weeks: int = DEFAULT_WEEKS,
    oee_source: OeeSource | None = None,
) -> KpiReport:
    """Every KPI over the last ``weeks`` ISO weeks up to ``now``, with weekly trends."""
    if weeks not in PERIODS_WEEKS:
        raise ValueError(f"weeks: one of {', '.join(map(str, PERIODS_WEEKS))}")
    windows = week_windows(now, weeks)
    start, end = windows[0][0], windows[-1][1]
    # Inventory needs what was used after the period too (to work stock back to it).
    delivered = _delivered(session, start, now)
    in_period = [o for o in delivered if o.delivered_at <= end]
    bom: dict[str, dict[str, float]] = defaultdict(dict)
    for line in session.scalars(select(BomLine)):
        bom[line.sku][line.material_id] = line.qty_per_unit
    on_hand = {i: q for i, q in session.execute(select(Material.id, Material.on_hand))}
    receipts = [
        (m, at, q)
        for m, at, q in session.execute(
            select(PurchaseOrder.material_id, PurchaseOrder.arrives_at, PurchaseOrder.qty).where(
                PurchaseOrder.status == "received", PurchaseOrder.arrives_at >= start
            )
        )
    ]
    scores = [
        (at, score)
        for at, score in session.execute(
            select(FollowupTask.done_at, FollowupTask.score).where(
                FollowupTask.kind == SATISFACTION,
                FollowupTask.status == "done",
                FollowupTask.done_at >= start,
                FollowupTask.score.is_not(None),
            )
        )
        if at is not None and score is not None
    ]
    spans = [
        AlertSpan(opened, resolved, severity, kind)
        for opened, resolved, severity, kind in session.execute(
            select(Alert.opened_at, Alert.resolved_at, Alert.severity, Alert.kind).where(
                Alert.opened_at <= end,
                or_(Alert.status.in_(ACTIVE), Alert.resolved_at >= start),
            )
        )
    ]
    # An alert acked but not resolved is still active; one resolved has ``resolved_at``.
    alerts_kpi, by_age = open_alerts(spans, windows, now)
    kpis = [
        *delivery_kpis(in_period, windows),
        inventory_turns(in_period, windows, bom=bom, on_hand=on_hand, receipts=receipts, now=now),
        satisfaction(scores, windows),
        alerts_kpi,
    ]
    return {
        "generated_at": iso(now) or "",
        "period_weeks": weeks,
        "start": iso(start) or "",
        "end": iso(end) or "",
        "weeks": [w[0].date().isoformat() for w in windows],
        "kpis": kpis,
        "oee": oee_report(session, windows, oee_source or OEE_SOURCE),
        "alerts_by_age": by_age,
    }
