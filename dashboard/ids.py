"""Every component id of the screens, in one place.

Single components have string ids. Repeated parts (a tile per line, a row per order,
an item per alert) have dict ids ``{"type": <part>, <key>: <entity id>}`` built by
:func:`part`; pattern-matching callbacks and ``set_props`` address them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- shared ------------------------------------------------------------------------
NAV = "nav"


@dataclass(frozen=True)
class LiveIds:
    """The ids every live page has: its root, the snapshot Store it was rendered from, the
    stream's heartbeat Output, the watchdog Interval and the stale banner."""

    root: str
    start: str
    heartbeat: str
    watchdog: str
    stale: str

    @classmethod
    def of(cls, page: str) -> LiveIds:
        """The ids of the live page ``page``: ``wall-root``, ``wall-start`` and so on."""
        return cls(
            *(f"{page}-{part}" for part in ("root", "start", "heartbeat", "watchdog", "stale"))
        )


WALL = LiveIds.of("wall")
BOARD = LiveIds.of("board")
ALERTS = LiveIds.of("alerts")
PLAN = LiveIds.of("plan")
KPI = LiveIds.of("kpi")
INBOX = LiveIds.of("inbox")

# -- /wall ---------------------------------------------------------------------------
WALL_GRID = "wall-grid"
WALL_SITE = "wall-site"
WALL_CLOCK = "wall-clock"
WALL_DATE = "wall-date"
WALL_SUMMARY = "wall-summary"

TILE = "tile"
TILE_NAME = "tile-name"
TILE_STATE = "tile-state"
TILE_SINCE = "tile-since"
TILE_REASON = "tile-reason"
TILE_WO = "tile-wo"
TILE_BAR = "tile-bar"
TILE_COUNT = "tile-count"
TILE_PCT = "tile-pct"
TILE_RATE = "tile-rate"
TILE_NOMINAL = "tile-nominal"
TILE_ETA = "tile-eta"
TILE_NEXT = "tile-next"
TILE_OEE = "tile-oee"
TILE_APQ = "tile-apq"

# -- /board --------------------------------------------------------------------------
BOARD_ROWS = "board-rows"
BOARD_COUNT = "board-count"
BOARD_GANTT = "board-gantt"

ROW = "order-row"
ROW_PRIORITY = "order-priority"
ROW_CUSTOMER = "order-customer"
ROW_REQUESTED = "order-requested"
ROW_PROMISED = "order-promised"
ROW_ETA = "order-eta"
ROW_BAR = "order-bar"
ROW_PCT = "order-pct"
ROW_RISK = "order-risk"
ROW_REASON = "order-reason"

# -- /alerts -------------------------------------------------------------------------
ALERTS_LIST = "alerts-list"
ALERTS_COUNT = "alerts-count"
ALERTS_ACK_RESULT = "alerts-ack-result"  # dcc.Store: what the last acknowledge answered

ALERT = "alert"
ALERT_SEVERITY = "alert-severity"
ALERT_MESSAGE = "alert-message"
ALERT_AGE = "alert-age"
ALERT_ENTITY = "alert-entity"
ALERT_STATUS = "alert-status"
ALERT_ACK = "alert-ack"  # button: acknowledge through the API

# -- /plan ---------------------------------------------------------------------------
PLAN_CHANGES = "plan-changes"  # pending changes, then the ones decided lately
PLAN_REQUESTS = "plan-requests"
PLAN_REVISION = "plan-revision"
PLAN_DECISION = "plan-decision"  # dcc.Store: what the last approve/reject answered
PLAN_DECISION_MSG = "plan-decision-msg"

CHANGE = "change"
CHANGE_APPROVE = "change-approve"  # button: approve through the API
CHANGE_REJECT = "change-reject"  # button: reject through the API

# -- /orders -------------------------------------------------------------------------
ORDERS_ROOT = "orders-root"
ORDERS_LANG = "orders-lang"
ORDERS_SEARCH = "orders-search"
ORDERS_RESULTS = "orders-results"

# -- /kpi ----------------------------------------------------------------------------
KPI_BODY = "kpi-body"
KPI_VALUE = "kpi-value"  # one per figure (dict id, key "kpi")
KPI_SUB = "kpi-sub"
KPI_FIG = "kpi-fig"  # a figure's trend chart; also the lines' and the alert ages' charts
KPI_TABLE = "kpi-table"
KPI_PERIOD = "kpi-period"

# -- /inbox --------------------------------------------------------------------------
INBOX_LIST = "inbox-list"
INBOX_REP = "inbox-rep"  # the rep whose tasks are shown (search box)
INBOX_RESULT = "inbox-result"  # dcc.Store: what the last completion answered
INBOX_MSG = "inbox-msg"
TASK = "task"  # dict ids, key "task"
TASK_SCORE = "task-score"
TASK_NOTE = "task-note"
TASK_DONE = "task-done"  # button: complete through the API
# The person's notifications (in-app inbox) on /inbox.
INBOX_NOTES = "inbox-notes"
INBOX_NOTE_MSG = "inbox-note-msg"
INBOX_NOTE_RESULT = "inbox-note-result"  # dcc.Store: what the last read or ack answered
INBOX_READ_ALL = "inbox-read-all"  # button: mark every notification read
NOTE = "note"  # dict ids, key "note" (the notification's id)
NOTE_READ = "note-read"  # button: mark one read
NOTE_ACK = "note-ack"  # button: acknowledge its alert (key "note": "<id>:<alert id>")


def part(kind: str, key: str, entity_id: Any) -> dict[str, Any]:
    """The dict id of one repeated part, e.g. ``part(TILE_STATE, "line", "L1")``; a wildcard
    (``ALL``, ``MATCH``) in place of the id addresses every such part in a callback."""
    return {"type": kind, key: entity_id}


# -- /andon ----------------------------------------------------------------------------
ANDON = LiveIds.of("andon")
ANDON_LIST = "andon-list"
ANDON_COUNT = "andon-count"
ANDON_STOP = "andon-stop"  # dict-id parts of a stop: {"type": ..., "stop": id}
ANDON_STOP_LINE = "andon-stop-line"
ANDON_STOP_WHEN = "andon-stop-when"
ANDON_STOP_SENSOR = "andon-stop-sensor"
ANDON_PICK = "andon-pick"
ANDON_ASSIGN = "andon-assign"
ANDON_RESULT = "andon-result"
ANDON_MESSAGE = "andon-message"
ANDON_PARETO_LINE = "andon-pareto-line"
ANDON_PARETO = "andon-pareto"
ANDON_PARETO_TITLE = "andon-pareto-title"
