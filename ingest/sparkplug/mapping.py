"""A plant's Sparkplug mapping file: which edge node and device is which line, which metric
is which count or state. YAML (or JSON), validated by pydantic; every error names its field.

```yaml
site: plant-1                    # Loopline's site id for these lines
host_id: loopline                # this host application's id (spBv1.0/STATE/{host_id})
nodes:
  - group: Plant1                # Sparkplug group_id
    edge: Press-Cell-3           # edge_node_id
    devices:
      - device: PLC1             # device_id; leave out for the node's own metrics
        line: L3
        metrics:                 # metric names as the device's birth certificate gives them
          good: Production/Good Count
          scrap: Production/Scrap Count
          state: Status/Machine State
          reason_code: Status/Stop Code
          work_order: Production/Work Order
        states: {"1": running, "2": idle, "3": down, "4": changeover}
        reason_codes: {"17": BD-MECH}
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopline.ingest.mqtt.messages import STATES, State

# Sparkplug B 3.0, 4.1.1: ids are UTF-8 strings without the MQTT specials + / #.
_SPB_ID: Final = r"^[^+/#]{1,128}$"
_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"
_CODE: Final = r"^[A-Za-z0-9_.-]{1,64}$"
# How a device's state metric reads when the file gives no ``states`` table.
DEFAULT_STATES: Final[dict[str, State]] = {s: s for s in STATES}  # type: ignore[misc]


class MappingFileError(ValueError):
    """A mapping file that cannot be used; ``problems`` are ``"field.path: message"``."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metrics(_Spec):
    """Metric names (as in the birth certificate) for each thing Loopline reads."""

    good: str | None = None
    scrap: str | None = None
    state: str | None = None
    reason: str | None = None
    reason_code: str | None = None
    work_order: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Metrics:
        if not any((self.good, self.scrap, self.state)):
            raise ValueError("name at least one of good, scrap or state")
        if self.scrap and not self.good:
            raise ValueError("scrap needs good too (progress reports carry both)")
        return self

    def names(self) -> dict[str, str]:
        """Role -> metric name, for the roles given."""
        return {k: v for k, v in self.model_dump().items() if v}


class DeviceMap(_Spec):
    """One device (or the node itself, ``device`` left out) that is one line."""

    device: Annotated[str, Field(pattern=_SPB_ID)] | None = None
    line: Annotated[str, Field(pattern=_NAME)]
    metrics: Metrics
    states: dict[str, State] = Field(default_factory=lambda: dict(DEFAULT_STATES))
    reason_codes: dict[str, Annotated[str, Field(pattern=_CODE)]] = Field(default_factory=dict)

    @field_validator("states", "reason_codes", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # YAML reads {1: running} with int keys; the metric's value is compared as text.
        if isinstance(value, dict):
            return {_key(k): v for k, v in value.items()}
        return value


class NodeMap(_Spec):
    """One edge node: its group and id, and the devices of it that are lines."""

    group: Annotated[str, Field(pattern=_SPB_ID)]
    edge: Annotated[str, Field(pattern=_SPB_ID)]
    devices: Annotated[list[DeviceMap], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_devices(self) -> NodeMap:
        seen: set[str | None] = set()
        for i, d in enumerate(self.devices):
            if d.device in seen:
                raise ValueError(f"devices[{i}].device {d.device!r} is listed twice")
            seen.add(d.device)
        return self

    @property
    def subscription(self) -> str:
        """The node's topics (Sparkplug B 3.0, 4.1: ``spBv1.0/{group}/{type}/{edge}[/...]``)."""
        return f"spBv1.0/{self.group}/+/{self.edge}/#"


class SparkplugMapping(_Spec):
    """A plant's whole mapping file."""

    site: Annotated[str, Field(pattern=_NAME)]
    host_id: Annotated[str, Field(pattern=_SPB_ID)] = "loopline"
    # Ask a node for a rebirth at most this often (a burst of out-of-order data asks once).
    rebirth_min_interval_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 5.0
    nodes: Annotated[list[NodeMap], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> SparkplugMapping:
        nodes: set[tuple[str, str]] = set()
        lines: dict[str, str] = {}
        for i, node in enumerate(self.nodes):
            if (node.group, node.edge) in nodes:
                raise ValueError(f"nodes[{i}]: node {node.group}/{node.edge} is listed twice")
            nodes.add((node.group, node.edge))
            for j, d in enumerate(node.devices):
                where = f"nodes[{i}].devices[{j}]"
                if d.line in lines:
                    raise ValueError(f"{where}.line {d.line!r} is also {lines[d.line]}")
                lines[d.line] = where
        return self

    def subscriptions(self) -> list[str]:
        """One topic filter per edge node."""
        return [n.subscription for n in self.nodes]

    def device(self, group: str, edge: str, device: str | None) -> DeviceMap | None:
        """The mapping of one device (``None``: the node's own metrics), if any."""
        for node in self.nodes:
            if node.group == group and node.edge == edge:
                for d in node.devices:
                    if d.device == device:
                        return d
        return None

    def lines_of(self, group: str, edge: str) -> list[str]:
        """Every line fed by one edge node (its own metrics and its devices')."""
        return [d.line for n in self.nodes if (n.group, n.edge) == (group, edge) for d in n.devices]


def _key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def value_key(value: Any) -> str:
    """A metric's value as the text a ``states``/``reason_codes`` table is keyed by."""
    return _key(value)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "file"


def parse_mapping(doc: Any, *, path: str = "mapping") -> SparkplugMapping:
    """Validate a loaded document; ``MappingFileError`` lists every problem with its field."""
    try:
        return SparkplugMapping.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{_where(tuple(err['loc']))}: {msg}")
        raise MappingFileError(path, problems) from None


def load_mapping(path: Path) -> SparkplugMapping:
    """Read and validate a mapping file (``.yaml``, ``.yml`` or ``.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingFileError(str(path), [f"file: cannot read it ({exc.strerror})"]) from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise MappingFileError(str(path), [f"file: not valid YAML/JSON ({exc})"]) from None
    return parse_mapping(doc, path=str(path))
