"""Sparkplug B sessions turned into Loopline's own shop-floor messages. Pure: no I/O.

One ``SparkplugAdapter`` is the host application's view of the plant's edge nodes
(Sparkplug B 3.0, chapter 5 "Operational Behavior"):
- NBIRTH opens a node's session: its ``bdSeq`` metric names the session, its ``seq`` is 0,
  its metrics bind names to aliases. A device's DBIRTH does the same for the device.
- NDEATH (the node's Will) with the session's ``bdSeq`` ends it: every line of the node
  becomes ``unavailable``; one with an older ``bdSeq`` is a late Will, ignored. DDEATH
  ends one device.
- Every message of a session after the NBIRTH (DBIRTH, NDATA, DDATA, DDEATH) carries the
  next ``seq``, 0-255 wrapping. A gap, data from a node or device whose birth was not
  seen (ingest started after it) or an unknown alias asks the node for a rebirth (NCMD
  ``Node Control/Rebirth``), at most once per ``rebirth_min_interval_s``.

Metrics the mapping file names become ``StateMessage``/``ProgressMessage``, exactly what
the Loopline topics produce, so counters, states, downtime codes and OEE work unchanged.
Sparkplug reports by exception (a DDATA carries only what changed), so the last value of
each mapped metric is kept per device. The messages' ``seq`` is Loopline's own per line
(``source = "sparkplug"``), counted on from the live model's last one (``seq_start``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf.message import DecodeError

from loopline.ingest.mqtt.messages import (
    MAX_COUNTER,
    MAX_WORK_ORDER_CHARS,
    ProgressMessage,
    StateMessage,
)
from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.mapping import DeviceMap, SparkplugMapping, value_key

NAMESPACE: Final = "spBv1.0"
SOURCE: Final = "sparkplug"  # the seq stream Loopline keeps for Sparkplug reports
MAX_PAYLOAD_BYTES: Final = 1024 * 1024  # births of big devices run to tens of kB
SEQ_MODULO: Final = 256  # Sparkplug B 3.0, 5.4: seq runs 0-255 and wraps
BDSEQ: Final = "bdSeq"
REBIRTH_METRIC: Final = "Node Control/Rebirth"
_MAX_EPOCH_MS: Final = 253_402_300_799_999
_DATA_TYPES: Final = frozenset({"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA"})
_IGNORED_TYPES: Final = frozenset({"NCMD", "DCMD", "STATE"})  # commands: ours or another host's

# Dead-letter reasons (beside those of ingest/mqtt/messages.py).
REASON_BAD_TOPIC: Final = "sparkplug_bad_topic"
REASON_TOO_LARGE: Final = "sparkplug_too_large"
REASON_BAD_PAYLOAD: Final = "sparkplug_bad_payload"
REASON_NO_BDSEQ: Final = "sparkplug_no_bdseq"
REASON_NO_BIRTH: Final = "sparkplug_no_birth"
REASON_BAD_METRIC: Final = "sparkplug_bad_metric"
REASON_UNKNOWN_STATE: Final = "sparkplug_unknown_state"


@dataclass(frozen=True)
class Problem:
    """Something in one message that could not be taken (a dead letter)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Gap:
    """A node's ``seq`` that did not follow on (lost, reordered or a restarted node)."""

    group: str
    edge: str
    expected: int
    got: int


@dataclass
class Decoded:
    """What one Sparkplug message means for Loopline."""

    reports: list[ProgressMessage | StateMessage] = field(default_factory=list)
    # Lines whose node or device died (-> ``unavailable``), with why.
    deaths: list[tuple[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    gap: Gap | None = None
    # (group, edge) to send NCMD Node Control/Rebirth to.
    rebirth: tuple[str, str] | None = None
    # A message not meant for Loopline (a command, an unmapped device): acked, nothing kept.
    ignored: bool = False


@dataclass
class _Device:
    aliases: dict[int, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # role -> last value
    online: bool = False


@dataclass
class _Node:
    bdseq: int | None = None
    seq: int | None = None
    online: bool = False
    aliases: dict[int, str] = field(default_factory=dict)
    devices: dict[str | None, _Device] = field(default_factory=dict)
    rebirth_at: float = -math.inf


SeqStart = Callable[[str], int]


class SparkplugAdapter:
    """Decode Sparkplug messages in arrival order; keeps each node's session."""

    def __init__(
        self,
        mapping: SparkplugMapping,
        *,
        seq_start: SeqStart,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mapping = mapping
        self._seq_start = seq_start
        self._monotonic = monotonic
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._line_seq: dict[str, int] = {}
        # Looked up per message: the mapping as dicts, once.
        self._maps: dict[tuple[str, str, str | None], DeviceMap] = {
            (n.group, n.edge, d.device): d for n in mapping.nodes for d in n.devices
        }
        self._roles = {
            key: {name: role for role, name in d.metrics.names().items()}
            for key, d in self._maps.items()
        }
        self._mapped_nodes = {(n.group, n.edge) for n in mapping.nodes}
        self.counts = {"births": 0, "deaths": 0, "gaps": 0, "rebirths": 0, "ignored": 0}

    def node_online(self, group: str, edge: str) -> bool:
        """Whether a node's session is open (its NBIRTH seen, no NDEATH since)."""
        node = self._nodes.get((group, edge))
        return node is not None and node.online

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> Decoded:
        """What one message means; updates the node's session (call once per message)."""
        out = Decoded()
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != NAMESPACE:
            out.problems.append(Problem(REASON_BAD_TOPIC, f"topic {topic[:120]!r} is not spBv1.0"))
            return out
        if parts[1] == "STATE" or parts[2] in _IGNORED_TYPES:
            out.ignored = True
            return out
        if len(parts) not in (4, 5) or parts[2] not in _DATA_TYPES:
            out.problems.append(
                Problem(REASON_BAD_TOPIC, f"topic {topic[:120]!r}: not group/TYPE/edge[/device]")
            )
            return out
        group, kind, edge = parts[1], parts[2], parts[3]
        device_id = parts[4] if len(parts) == 5 else None
        if (kind[0] == "D") != (device_id is not None):
            out.problems.append(Problem(REASON_BAD_TOPIC, f"{kind} on {topic[:120]!r}"))
            return out
        if (group, edge) not in self._mapped_nodes:
            out.ignored = True
            self.counts["ignored"] += 1
            return out
        if len(payload) > MAX_PAYLOAD_BYTES:
            out.problems.append(
                Problem(REASON_TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
            )
            return out
        try:
            msg = schema.Payload.FromString(payload)
        except DecodeError as exc:
            out.problems.append(Problem(REASON_BAD_PAYLOAD, f"not a Sparkplug B payload: {exc}"))
            return out
        node = self._nodes.setdefault((group, edge), _Node())
        if kind == "NBIRTH":
            self._nbirth(out, group, edge, node, msg, received_at)
        elif kind == "NDEATH":
            self._ndeath(out, group, edge, node, msg)
        else:
            self._in_session(out, group, edge, kind, device_id, node, msg, received_at)
        return out

    # -- the message types ---------------------------------------------------------------

    def _nbirth(
        self, out: Decoded, group: str, edge: str, node: _Node, msg: Any, at: datetime
    ) -> None:
        bdseq = _bdseq(msg)
        if bdseq is None:
            out.problems.append(Problem(REASON_NO_BDSEQ, "NBIRTH without a bdSeq metric"))
            self._ask_rebirth(out, group, edge, node)
            return
        self.counts["births"] += 1
        node.bdseq, node.seq, node.online = bdseq, int(msg.seq), True
        node.aliases = {}
        # A new session: every device must be born again (Sparkplug B 3.0, 5.9).
        node.devices = {None: _Device(online=True)}
        self._take(out, group, edge, None, node.devices[None], node.aliases, msg, at, birth=True)

    def _ndeath(self, out: Decoded, group: str, edge: str, node: _Node, msg: Any) -> None:
        bdseq = _bdseq(msg)
        if node.bdseq is not None and bdseq is not None and bdseq != node.bdseq:
            out.ignored = True  # an earlier session's Will, delivered late: the node lives
            return
        self.counts["deaths"] += 1
        node.online = False
        node.seq = None
        for device in node.devices.values():
            device.online = False
        why = "Sparkplug NDEATH"
        out.deaths += [(line, why) for line in self.mapping.lines_of(group, edge)]

    def _in_session(
        self,
        out: Decoded,
        group: str,
        edge: str,
        kind: str,
        device_id: str | None,
        node: _Node,
        msg: Any,
        at: datetime,
    ) -> None:
        dmap = self._maps.get((group, edge, device_id))
        if kind == "DDEATH" and dmap is not None:
            out.deaths.append((dmap.line, "Sparkplug DDEATH"))
        if not node.online:
            # Ingest started after the birth, or the node died: only a rebirth tells.
            if kind != "DDEATH":
                out.problems.append(Problem(REASON_NO_BIRTH, f"{kind} before the node's NBIRTH"))
            self._ask_rebirth(out, group, edge, node)
            return
        self._check_seq(out, group, edge, node, msg)
        device = node.devices.setdefault(device_id, _Device())
        if kind == "DDEATH":
            device.online = False
            return
        if kind == "DBIRTH":
            device.aliases, device.values, device.online = {}, {}, True
            self._take(out, group, edge, device_id, device, device.aliases, msg, at, birth=True)
            return
        if not device.online:
            if dmap is not None:
                out.problems.append(Problem(REASON_NO_BIRTH, f"DDATA before {device_id}'s DBIRTH"))
            self._ask_rebirth(out, group, edge, node)
            return
        aliases = node.aliases if device_id is None else device.aliases
        self._take(out, group, edge, device_id, device, aliases, msg, at, birth=False)

    def _check_seq(self, out: Decoded, group: str, edge: str, node: _Node, msg: Any) -> None:
        if not msg.HasField("seq"):
            return
        seq = int(msg.seq)
        if node.seq is not None and seq != (node.seq + 1) % SEQ_MODULO:
            expected = (node.seq + 1) % SEQ_MODULO
            out.gap = Gap(group, edge, expected, seq)
            self.counts["gaps"] += 1
            self._ask_rebirth(out, group, edge, node)
        node.seq = seq % SEQ_MODULO

    def _ask_rebirth(self, out: Decoded, group: str, edge: str, node: _Node) -> None:
        now = self._monotonic()
        if now - node.rebirth_at < self.mapping.rebirth_min_interval_s:
            return
        node.rebirth_at = now
        self.counts["rebirths"] += 1
        out.rebirth = (group, edge)

    # -- metrics -> reports --------------------------------------------------------------

    def _take(
        self,
        out: Decoded,
        group: str,
        edge: str,
        device_id: str | None,
        device: _Device,
        aliases: dict[int, str],
        msg: Any,
        at: datetime,
        *,
        birth: bool,
    ) -> None:
        """Read the mapped metrics of one payload into the device; report what changed."""
        dmap = self._maps.get((group, edge, device_id))
        roles = self._roles.get((group, edge, device_id), {})
        seen: set[str] = set()
        stamp: int | None = None
        for metric in msg.metrics:
            name = metric.name if metric.HasField("name") else None
            if metric.HasField("alias"):
                if birth and name is not None:
                    aliases[int(metric.alias)] = name
                elif name is None:
                    name = aliases.get(int(metric.alias))
                    if name is None:
                        self._ask_rebirth(out, group, edge, self._nodes[(group, edge)])
                        continue
            if name is None or name not in roles or metric.is_historical:
                continue
            role = roles[name]
            device.values[role] = schema.metric_value(metric)
            seen.add(role)
            if metric.HasField("timestamp"):
                stamp = max(stamp or 0, int(metric.timestamp))
        if dmap is None or not seen:
            return
        ts = _ts(
            stamp if stamp is not None else (msg.timestamp if msg.HasField("timestamp") else None),
            at,
        )
        if seen & {"state", "reason", "reason_code"} and "state" in device.values:
            self._state(out, dmap, device, ts)
        if seen & {"good", "scrap", "work_order"} and device.values.get("good") is not None:
            self._progress(out, dmap, device, ts)

    def _state(self, out: Decoded, dmap: DeviceMap, device: _Device, ts: datetime) -> None:
        raw = device.values["state"]
        state = dmap.states.get(value_key(raw))
        if state is None:
            out.problems.append(
                Problem(
                    REASON_UNKNOWN_STATE,
                    f"line {dmap.line}: state metric {dmap.metrics.state!r} value {raw!r} "
                    f"is not in the mapping's states ({', '.join(sorted(dmap.states))})",
                )
            )
            return
        code_raw = device.values.get("reason_code")
        code = None
        if code_raw is not None and value_key(code_raw) not in ("", "0"):
            code = dmap.reason_codes.get(value_key(code_raw), value_key(code_raw))
        reason = device.values.get("reason")
        text = str(reason)[:256] if reason not in (None, "") else None
        out.reports.append(
            StateMessage(
                self.mapping.site,
                dmap.line,
                self._next_seq(dmap.line),
                ts,
                state,
                text,
                SOURCE,
                code,
            )
        )

    def _progress(self, out: Decoded, dmap: DeviceMap, device: _Device, ts: datetime) -> None:
        good = _count(device.values.get("good"))
        scrap = _count(device.values.get("scrap", 0) or 0)
        if good is None or scrap is None:
            out.problems.append(
                Problem(
                    REASON_BAD_METRIC,
                    f"line {dmap.line}: good {device.values.get('good')!r} / scrap "
                    f"{device.values.get('scrap')!r} are not counts 0..{MAX_COUNTER}",
                )
            )
            return
        wo = device.values.get("work_order")
        work_order = str(wo)[:MAX_WORK_ORDER_CHARS] if wo not in (None, "") else ""
        out.reports.append(
            ProgressMessage(
                self.mapping.site,
                dmap.line,
                self._next_seq(dmap.line),
                ts,
                work_order,  # "": the handler takes the line's current work order
                good,
                scrap,
                SOURCE,
                None,
            )
        )

    def _next_seq(self, line: str) -> int:
        seq = self._line_seq.get(line)
        seq = self._seq_start(line) if seq is None else seq + 1
        self._line_seq[line] = seq
        return seq


def _bdseq(msg: Any) -> int | None:
    for metric in msg.metrics:
        if metric.name == BDSEQ:
            value = schema.metric_value(metric)
            return int(value) % SEQ_MODULO if isinstance(value, int) else None
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        return None
    return value


def _ts(epoch_ms: int | None, fallback: datetime) -> datetime:
    if epoch_ms is None or not 0 < epoch_ms <= _MAX_EPOCH_MS:
        return fallback
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def rebirth_payload(now_ms: int) -> bytes:
    """An NCMD payload asking for a rebirth (Sparkplug B 3.0, 6.4.20 "Node Control/Rebirth")."""
    payload = schema.Payload(timestamp=now_ms)
    metric = payload.metrics.add(name=REBIRTH_METRIC, timestamp=now_ms)
    schema.set_value(metric, schema.BOOLEAN, True)
    return bytes(payload.SerializeToString())
