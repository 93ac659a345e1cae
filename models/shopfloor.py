"""Shop-floor reports (progress and state per line) applied to the live state.

A batch costs three pipelined round trips whatever its size: read the lines and work
orders it touches, read what the ETAs depend on, write everything and publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from loopline.models.clock import iso, parse_ts
from loopline.models.downtime import Transition
from loopline.models.estimate import estimate
from loopline.models.live import Change, LiveState, Update
from loopline.models.oee import CountDelta, add_counts

# Weight of the newest observation in the smoothed rate (exponential moving average).
RATE_SMOOTHING = 0.3
# A sequence number this far below the last one is a restarted counter, not a late message
# (messages on different topics may overtake each other, but never by this many).
SEQ_RESTART_WINDOW = 100
# A seq this far ahead of the last one is no gap of lost messages (a broker queues far fewer
# for one line: Mosquitto's max_queued_messages is 100,000 in our deployments): the sensor
# restarted with other numbering, or the value is garbage. It is reported as a reset.
SEQ_JUMP_MAX = 1_000_000
# A work order's cumulative good + scrap above this multiple of its quantity is no real
# count (a line overproduces by a few percent, not tenfold): refused as implausible, so a
# garbage value can neither mark the order done for ever nor overflow a checkpoint.
COUNTER_QTY_FACTOR = 10


class ProgressReport(Protocol):
    """A line's cumulative counters for one work order (read-only attributes)."""

    @property
    def line(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def work_order(self) -> str: ...
    @property
    def good(self) -> int: ...
    @property
    def scrap(self) -> int: ...


class StateReport(Protocol):
    """A line's state (running, idle, down, changeover) with an optional reason."""

    @property
    def line(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class Refused:
    """A report the live model cannot take, with a machine-readable reason."""

    report: Any
    reason: str
    detail: str


@dataclass(frozen=True)
class Gap:
    """Sequence numbers that never arrived from a line (lost or not yet delivered)."""

    line: str
    expected: int
    got: int


@dataclass
class ShopfloorOutcome:
    changes: list[Change] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    # Forward seq jumps too large to be lost messages (taken as resets, also in ``resets``).
    jumps: list[Gap] = field(default_factory=list)
    # The writes, for a caller that stores elsewhere first (``plan_reports``).
    updates: list[Update] = field(default_factory=list)
    # State changes (stops open and close: ``downtime.record_transitions`` stores them).
    transitions: list[Transition] = field(default_factory=list)
    # Units made per line (OEE counts: ``oee.add_counts`` writes them with ``updates``).
    counts: list[CountDelta] = field(default_factory=list)
    # Lines heard from for the first time, and when (``downtime.record_first_reports``).
    first_reports: list[tuple[str, datetime]] = field(default_factory=list)


def seq_fields(source: str) -> tuple[str, str]:
    """The line fields holding a publisher's last seq and last state seq: each publisher
    (``source``; "" is the line's own sensor) counts on its own, so a second one on the
    same line is neither a gap nor a restart of the first."""
    if not source:
        return "seq", "state_seq"
    return f"seq@{source}", f"state_seq@{source}"


def restarted(last_seq: int, seq: int) -> bool:
    """Whether ``seq`` means the line's sensor started counting again (a reboot)."""
    return last_seq - seq > SEQ_RESTART_WINDOW


def jumped(last_seq: int, seq: int) -> bool:
    """Whether ``seq`` is too far ahead of the last one to be a gap of lost messages."""
    return seq - last_seq > SEQ_JUMP_MAX


def counter_limit(qty: int) -> int:
    """The most good + scrap a work order of ``qty`` units can plausibly report."""
    return COUNTER_QTY_FACTOR * max(qty, 1)


def apply_reports(
    live: LiveState,
    reports: Sequence[ProgressReport | StateReport],
    *,
    now: datetime,
    received_at: datetime,
) -> ShopfloorOutcome:
    """Apply a batch of reports in arrival order; cumulative counters make repeats harmless."""
    out = plan_reports(live, reports, now=now, received_at=received_at)
    out.changes = live.apply(out.updates, also=lambda pipe: add_counts(pipe, out.counts))
    return out


def plan_reports(
    live: LiveState,
    reports: Sequence[ProgressReport | StateReport],
    *,
    now: datetime,
    received_at: datetime,
    reordered: bool = False,
) -> ShopfloorOutcome:
    """What a batch would change (``updates``), gaps and refusals; reads live, writes nothing.

    ``reordered``: a line's reports may arrive out of order (shared-group members each
    get some of them), so a seq far below the last one is a restart only when its ``ts``
    is later than that of the newest report applied (kept in ``seq_ts``), not a report
    another member overtook.
    """
    out = ShopfloorOutcome()
    line_ids = sorted({r.line for r in reports})
    wo_ids = sorted({r.work_order for r in reports if hasattr(r, "work_order")})
    # One round trip for both kinds (a ``Snapshot`` keeps them for the estimate below).
    found = live.get_many_keys(
        [("line", i) for i in line_ids] + [("work_order", i) for i in wo_ids]
    )
    lines = {i: v for i, v in zip(line_ids, found[: len(line_ids)], strict=True) if v}
    wos = {i: v for i, v in zip(wo_ids, found[len(line_ids) :], strict=True) if v}
    pending: dict[tuple[str, str], dict[str, Any]] = {}
    last_seen = iso(received_at)  # the same for the whole batch
    for report in reports:
        line = lines.get(report.line)
        if line is None:
            out.refused.append(Refused(report, "unknown_line", f"no line '{report.line}'"))
            continue
        lp = pending.get(("line", report.line))
        if lp is None:
            lp = pending[("line", report.line)] = {}
            lines[report.line] = line = dict(line)  # a copy that follows this batch's writes
        seq_key, state_seq_key = seq_fields(getattr(report, "source", ""))
        last_seq = line.get(seq_key)
        if last_seq is not None and jumped(last_seq, report.seq):
            out.jumps.append(Gap(report.line, last_seq + 1, report.seq))
        ts_key = f"{seq_key}_ts"
        # An old report another member overtook is no restart: it goes on as a late one
        # (its counters still count, its state loses to the newer state).
        overtaken = reordered and not _later(report.ts, line.get(ts_key))
        if last_seq is not None and (
            (restarted(last_seq, report.seq) and not overtaken) or jumped(last_seq, report.seq)
        ):
            # The sensor restarted its counter: start over rather than ignore it forever.
            out.resets.append(report.line)
            last_seq = None
            lp[state_seq_key] = line[state_seq_key] = None
        if last_seq is not None and report.seq > last_seq + 1:
            out.gaps.append(Gap(report.line, last_seq + 1, report.seq))
        if last_seq is None or report.seq > last_seq:
            lp[seq_key] = line[seq_key] = report.seq
            if reordered:
                lp[ts_key] = line[ts_key] = report.ts.isoformat()
        lp["last_seen"] = line["last_seen"] = last_seen
        if not line.get("first_report_at"):
            # OEE counts planned time from here: what the line did before, no one knows.
            lp["first_report_at"] = line["first_report_at"] = iso(report.ts)
            out.first_reports.append((report.line, report.ts))
        if line.get("state") == "unavailable":
            lp["state"] = line["state"] = line.get("reported_state") or "idle"
            if lp["state"] != "down":
                lp["reason"] = line["reason"] = None
        if hasattr(report, "state"):
            # Order holds per topic only (MQTT 4.6), so a state report is judged against the
            # last state report: a progress message overtaking it must not hide it.
            state_seq = line.get(state_seq_key)
            if state_seq is None or report.seq > state_seq:
                lp[state_seq_key] = line[state_seq_key] = report.seq
                moved = _apply_state(line, lp, cast(StateReport, report))
                line.update(lp)
                if moved is not None:
                    out.transitions.append(moved)
            continue
        report = cast(ProgressReport, report)
        wo = wos.get(report.work_order)
        if wo is None:
            out.refused.append(
                Refused(report, "unknown_work_order", f"no work order '{report.work_order}'")
            )
            continue
        limit = counter_limit(int(wo.get("qty") or 0))
        if report.good + report.scrap > limit:
            out.refused.append(
                Refused(
                    report,
                    "implausible_counter",
                    f"good {report.good} + scrap {report.scrap} exceeds {limit} "
                    f"({COUNTER_QTY_FACTOR} x qty {wo.get('qty')} of {report.work_order})",
                )
            )
            continue
        wp = pending.get(("work_order", report.work_order))
        if wp is None:
            wp = pending[("work_order", report.work_order)] = {}
            wos[report.work_order] = wo = dict(wo)  # a copy that follows this batch's writes
        _apply_progress(wo, wp, report)
        made = _made(wo, wp, line.get("rates"), report)  # wo: as before this report
        if made is not None:
            out.counts.append(made)
        wo.update(wp)
        lp["work_order"] = line["work_order"] = report.work_order
        lp["rate_uph"] = line["rate_uph"] = wo.get("rate_uph")
        if wo.get("line") != report.line:
            wp["line"] = wo["line"] = report.line
    updates = [Update(entity, i, fields) for (entity, i), fields in pending.items()]
    touched_lines = sorted({i for (entity, i) in pending if entity == "line"})
    if touched_lines:
        updates += estimate(live, now, touched_lines, overlay=pending)
    out.updates = updates
    return out


def _later(ts: datetime, last: str | None) -> bool:
    """Whether ``ts`` is after the stored full-precision ``last`` (True when there is none)."""
    return last is None or ts > datetime.fromisoformat(last)


def _apply_state(
    current: dict[str, Any], lp: dict[str, Any], report: StateReport
) -> Transition | None:
    """Apply a state report; the stop it opens or closes, or the code it gives one."""
    code = getattr(report, "reason_code", None) if report.state != "running" else None
    moved = None
    if current.get("reported_state") != report.state:
        lp["since"] = iso(report.ts)
        moved = Transition(report.line, report.ts, report.state, report.reason, code, True)
    elif code is not None and code != current.get("reason_code"):
        moved = Transition(report.line, report.ts, report.state, report.reason, code, False)
    lp["reported_state"] = report.state
    lp["state"] = report.state
    # A code alone still says why on the wall (the tree's code, e.g. "BD-MECH").
    lp["reason"] = (report.reason or code) if report.state != "running" else None
    lp["reason_code"] = code
    return moved


def _made(
    before: dict[str, Any], wp: dict[str, Any], rates: Any, report: ProgressReport
) -> CountDelta | None:
    """The units this report adds to the line's OEE counts, at the line's ideal rate."""
    good = wp["good"] - int(before.get("good") or 0)
    scrap = wp["scrap"] - int(before.get("scrap") or 0)
    if good <= 0 and scrap <= 0:
        return None
    rate = rates.get(before.get("sku")) if rates else None
    ideal_s = (good + scrap) * 3600.0 / rate if rate else 0.0
    code = getattr(report, "reason_code", None)
    return CountDelta(report.line, report.ts, good, scrap, ideal_s, code)


def _apply_progress(wo: dict[str, Any], wp: dict[str, Any], report: ProgressReport) -> None:
    good_before = int(wo.get("good") or 0)
    good = max(good_before, report.good)
    scrap = max(int(wo.get("scrap") or 0), report.scrap)
    last_ts = parse_ts(wo.get("last_ts"))
    if last_ts is not None and report.ts > last_ts and good > good_before:
        hours = (report.ts - last_ts).total_seconds() / 3600
        observed = (good - good_before) / hours
        previous = wo.get("rate_uph")
        wp["rate_uph"] = round(
            observed
            if previous is None
            else RATE_SMOOTHING * observed + (1 - RATE_SMOOTHING) * float(previous),
            3,
        )
    if last_ts is None or report.ts > last_ts:
        wp["last_ts"] = iso(report.ts)
    qty = int(wo["qty"])
    wp["good"], wp["scrap"] = good, scrap
    wp["progress"] = round(min(good, qty) / qty, 4) if qty else 1.0
    wp["status"] = "done" if good >= qty else "running"
