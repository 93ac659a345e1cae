"""Connectors as data: a YAML/JSON file says how a CRM's webhook becomes canonical events.

A connector names how a delivery is authenticated (``auth``), how it is split into records
(``records``, JMESPath), how each record is deduplicated, where the order's fields are in a
record (``fields``, JMESPath through the ``jmespath`` library, with value maps and type
conversions), what to fetch from the CRM's API first (``fetch``) and how the promise, ETA,
risk and status are written back (``writeback``). A connector without ``fields`` receives the
canonical event itself. Files are validated by ``Connector`` (pydantic); shipped presets live
beside this module in ``connectors/``, a site adds its own in ``LOOPLINE_CONNECTORS_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import jmespath
import yaml
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SHIPPED_DIR = Path(__file__).resolve().parent / "connectors"
SUFFIXES = (".yaml", ".yml", ".json")
Kind = Literal["upsert", "cancel", "ignore"]
CANONICAL_KINDS: dict[str, str] = {"upsert": "order.upserted", "cancel": "order.cancelled"}


class UnknownSource(LookupError):
    """No connector is registered for this CRM source."""

    def __init__(self, source: str) -> None:
        super().__init__(f"unknown CRM source '{source}'")
        self.source = source


class MappingError(ValueError):
    """A record that cannot be mapped; ``errors`` name the source's own fields."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class ConnectorFileError(ValueError):
    """A connector file that does not load or validate; the message names the field."""


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class _Dotted:
    """A plain ``a.b.c`` path looked up directly: what JMESPath answers, without its
    interpreter (most connector paths are plain; the mapping runs per event)."""

    def __init__(self, expression: str) -> None:
        self.keys = expression.split(".")

    def search(self, value: Any) -> Any:
        for key in self.keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value


def _compile(expression: str) -> ParsedResult | _Dotted:
    if _DOTTED.fullmatch(expression):
        jmespath.compile(expression)  # the same checks as any path
        return _Dotted(expression)
    return _compile_jmespath(expression)


def _compile_jmespath(expression: str) -> ParsedResult:
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"not a JMESPath expression: {exc}") from None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Spec):
    """One value of a record: ``path`` (JMESPath) or ``const``, then ``map``, then ``type``.

    A bare string in a file is a ``path``. ``type`` converts: ``str`` (numbers become text),
    ``int`` ("12" and 12.0 become 12), ``date`` (a date, an ISO date-time, seen in ``tz``, or
    epoch milliseconds), ``epoch_ms`` (an ISO date-time or a number as epoch milliseconds:
    CRM change times as versions). A value the conversion cannot take is passed on as it
    is, for the canonical validation to name.
    """

    path: str | None = None
    const: Any = None
    map: dict[str, Any] = Field(default_factory=dict)
    otherwise: Any = None  # with ``map``: what a value the map does not name becomes
    default: Any = None
    type: Literal["any", "str", "int", "date", "epoch_ms", "datetime"] = "any"
    tz: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("path")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @field_validator("tz")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @cached_property
    def compiled(self) -> ParsedResult | _Dotted | None:
        return _compile(self.path) if self.path is not None else None

    def value(self, record: Any) -> Any:
        """This field's value in ``record``."""
        raw = self.compiled.search(record) if self.compiled is not None else self.const
        if raw is None:
            raw = self.default
        if self.map and isinstance(raw, str | int | bool) and str(raw) in self.map:
            raw = self.map[str(raw)]
        elif self.map and self.otherwise is not None:
            raw = self.otherwise
        return convert(raw, self.type, self.tz)


class LinesSpec(_Spec):
    """The order lines: ``path`` to a list, and each line's ``sku`` and ``qty`` in it."""

    path: str
    sku: FieldSpec
    qty: FieldSpec

    @field_validator("path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        _compile(value)
        return value

    @cached_property
    def compiled(self) -> ParsedResult | _Dotted:
        return _compile(self.path)


class Fields(_Spec):
    """Where the canonical order's fields are in one record."""

    kind: FieldSpec = Field(description="maps to upsert, cancel or ignore")
    order_id: FieldSpec
    version: FieldSpec
    occurred_at: FieldSpec | None = None
    customer_id: FieldSpec | None = None
    customer_name: FieldSpec | None = None
    lines: LinesSpec | None = None
    requested_date: FieldSpec | None = None
    priority: FieldSpec | None = None
    sales_rep: FieldSpec | None = None


class AuthSpec(_Spec):
    """How a delivery proves it comes from the CRM (ingest/crm/auth.py does the checks).

    Secrets never live in the file: ``secret_env`` names the environment variable holding
    one (``standard_webhooks`` without it uses Loopline's CRM secret).
    """

    kind: Literal[
        "standard_webhooks",
        "jiandaoyun",
        "hubspot_v3",
        "salesforce",
        "url_token",
        "shared_token",
        "import",  # a file import's column mapping: never accepted over HTTP
    ]
    secret_env: str | None = None
    header: str = "authorization"  # shared_token: the header holding it ("Bearer " optional)
    window_s: int = Field(default=300, gt=0)  # signed timestamps older than this are refused
    organization_id: str | None = None  # salesforce: the one org allowed
    organization_id_env: str | None = None
    ip_allowlist: list[str] = Field(default_factory=list)  # CIDRs; empty: any address
    public_url: str | None = None  # hubspot_v3: the URL HubSpot calls, if a proxy rewrites it


class ApiSpec(_Spec):
    """A CRM API Loopline calls (to fetch what a webhook leaves out, or to write back)."""

    kind: Literal["hubspot", "salesforce", "odoo", "jiandaoyun", "standard_webhooks", "json"]
    base_url: str | None = None
    base_url_env: str | None = None  # overrides base_url when set
    token_env: str | None = None  # bearer token / API key / password, by environment variable
    login_env: str | None = None  # odoo: the user whose API key token_env holds
    database: str | None = None  # odoo
    database_env: str | None = None
    api_version: str = "v60.0"  # salesforce REST
    object: str | None = None  # salesforce sObject / odoo model written back
    app_id: str | None = None  # jiandaoyun
    entry_id: str | None = None  # jiandaoyun
    fields: dict[str, str] = Field(default_factory=dict)  # loopline key -> CRM field
    values: dict[str, dict[str, str]] = Field(default_factory=dict)  # per key: value map
    properties: list[str] = Field(default_factory=list)  # hubspot: deal properties to read
    tz: str = "UTC"  # jiandaoyun: the zone whose midnight a written date is


READ_KINDS = ("odoo", "hubspot", "salesforce", "jiandaoyun")


class ReconcileSpec(_Spec):
    """How the CRM's open orders are read for reconciliation (ingest/crm/reconcile.py).

    ``api`` names the connector's API section whose connection is used (``fetch`` or
    ``writeback``); its kind must have a read (Odoo JSON-RPC ``search_read``, HubSpot's CRM
    search, Salesforce's REST query, Jiandaoyun's data list). An order is open when its
    ``open_field`` is one of ``open_in`` (or none of ``open_not_in``; neither: every record);
    ``order_field`` is the CRM field holding the order id (to read the orders Loopline holds
    open that the CRM no longer lists); ``read`` the fields to read (the webhook's).
    """

    api: Literal["fetch", "writeback"] = "fetch"
    open_field: str | None = None
    open_in: list[str] = Field(default_factory=list)
    open_not_in: list[str] = Field(default_factory=list)
    order_field: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")
    read: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")]] = Field(
        default_factory=list
    )
    page_size: int = Field(default=100, gt=0, le=200)

    @model_validator(mode="after")
    def _one_filter(self) -> ReconcileSpec:
        if (self.open_in or self.open_not_in) and not self.open_field:
            raise ValueError("open_in / open_not_in need open_field")
        if self.open_in and self.open_not_in:
            raise ValueError("give open_in or open_not_in, not both")
        return self


class Connector(_Spec):
    """One CRM connector file."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,38}$")]
    title: str
    description: str = ""
    format: Literal["json", "soap"] = "json"
    auth: AuthSpec
    records: str | None = None  # JMESPath to the list of records in a delivery; None: one
    dedupe: FieldSpec | None = None  # a record's delivery id; None: the signed id / a hash
    dedupe_header: str | None = None  # ... or a header holding it (one record per delivery)
    ref: FieldSpec | None = None  # the CRM's own record id, kept for the write-back
    fetch: ApiSpec | None = None
    fields: Fields | None = None  # None: records are canonical events already
    writeback: ApiSpec | None = None
    response: Literal["json", "soap_ack"] = "json"
    reconcile: ReconcileSpec | None = None  # the CRM's read API, for the periodic pull

    @model_validator(mode="after")
    def _readable(self) -> Connector:
        if self.reconcile is None:
            return self
        api = self.fetch if self.reconcile.api == "fetch" else self.writeback
        if api is None:
            raise ValueError(f"reconcile.api: the connector has no {self.reconcile.api} section")
        if api.kind not in READ_KINDS:
            raise ValueError(
                f"reconcile.api: the {api.kind} API has no read (one of {', '.join(READ_KINDS)})"
            )
        if self.fields is None:
            raise ValueError("reconcile: needs fields (the CRM's records are mapped by them)")
        return self

    @property
    def read_api(self) -> ApiSpec | None:
        """The API reconciliation reads with (None: this CRM cannot be reconciled)."""
        if self.reconcile is None:
            return None
        return self.fetch if self.reconcile.api == "fetch" else self.writeback

    @field_validator("records")
    @classmethod
    def _valid_records(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @cached_property
    def compiled_records(self) -> ParsedResult | _Dotted | None:
        return _compile(self.records) if self.records is not None else None

    def split(self, doc: Any) -> tuple[list[Any], str]:
        """The records of one delivery and the prefix naming them (``notifications[2]``)."""
        if self.compiled_records is None:
            return [doc], ""
        found = self.compiled_records.search(doc)
        if found is None:
            return [], ""
        records = found if isinstance(found, list) else [found]
        return records, "" if self.records in ("@", "[*]") else str(self.records)

    def map_record(self, record: Any, *, received_at: datetime | None = None) -> Mapped:
        """One record -> the canonical event body (or ``kind`` "ignore"); raises MappingError."""
        if self.fields is None:
            cancel = isinstance(record, dict) and record.get("type") == "order.cancelled"
            return Mapped("cancel" if cancel else "upsert", record, self._ref(record))
        f = self.fields
        kind = f.kind.value(record)
        if kind not in ("upsert", "cancel", "ignore"):
            where = f.kind.path or "kind"
            raise MappingError(
                [{"field": where, "message": f"'{kind}' is not mapped to upsert, cancel or ignore"}]
            )
        if kind == "ignore":
            return Mapped("ignore", {}, None)
        order: dict[str, Any] = {"id": f.order_id.value(record), "version": f.version.value(record)}
        if kind == "upsert":
            lines: Any = None
            if f.lines is not None:
                found = f.lines.compiled.search(record)
                lines = (
                    [
                        {"sku": f.lines.sku.value(item), "qty": f.lines.qty.value(item)}
                        for item in found
                    ]
                    if isinstance(found, list)
                    else found
                )
            order |= {
                "customer": {
                    "id": _value(f.customer_id, record),
                    "name": _value(f.customer_name, record),
                },
                "lines": lines,
                "requested_date": _value(f.requested_date, record),
                "priority": _value(f.priority, record) or "normal",
                "sales_rep": _value(f.sales_rep, record),
            }
        occurred = _value(f.occurred_at, record)
        body = {
            "type": CANONICAL_KINDS[kind],
            # A record without a change time: the receipt time stands in.
            "occurred_at": occurred or (received_at or datetime.now(UTC)).isoformat(),
            "order": order,
        }
        return Mapped(kind, body, self._ref(record))

    def _ref(self, record: Any) -> str | None:
        if self.ref is None:
            return None
        value = self.ref.value(record)
        return None if value is None else str(value)

    def delivery_id(self, record: Any, headers: dict[str, str], signed_id: str | None) -> str:
        """The id a redelivery of ``record`` keeps (its duplicate check)."""
        if self.dedupe is not None and (found := self.dedupe.value(record)) is not None:
            return str(found)
        if self.dedupe_header and (found := headers.get(self.dedupe_header.lower())):
            return found
        if signed_id:
            return signed_id
        # Why a hash: a CRM that names no delivery (Odoo) resends the same content at most.
        text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def source_field(self, path: str) -> str:
        """A canonical field path (``order.lines[0].qty``) as this connector's source names it."""
        f = self.fields
        if f is None:
            return path
        if (m := re.fullmatch(r"order\.lines(\[\d+\])(?:\.(sku|qty))?", path)) and f.lines:
            base = f"{f.lines.path}{m.group(1)}"
            spec = {"sku": f.lines.sku, "qty": f.lines.qty}.get(m.group(2) or "")
            return f"{base}.{_name(spec, m.group(2))}" if spec else base
        simple = {
            "type": f.kind,
            "occurred_at": f.occurred_at,
            "order.id": f.order_id,
            "order.version": f.version,
            "order.customer": f.customer_id,
            "order.customer.id": f.customer_id,
            "order.customer.name": f.customer_name,
            "order.requested_date": f.requested_date,
            "order.priority": f.priority,
            "order.sales_rep": f.sales_rep,
        }
        if path == "order.lines" and f.lines:
            return f.lines.path
        if path in simple:
            return _name(simple[path], path)
        return path


def _name(spec: FieldSpec | None, fallback: str) -> str:
    return spec.path if spec is not None and spec.path else fallback


def _value(spec: FieldSpec | None, record: Any) -> Any:
    return spec.value(record) if spec is not None else None


@dataclass(frozen=True)
class Mapped:
    """One record after mapping: its ``kind``, the canonical ``body``, the CRM's record id."""

    kind: str
    body: dict[str, Any]
    ref: str | None


def convert(value: Any, kind: str, tz: str = "UTC") -> Any:
    """``value`` as ``kind`` (FieldSpec.type); unconvertible values pass through unchanged."""
    if value is None or kind == "any":
        return value
    try:
        if kind == "str":
            if isinstance(value, float) and value.is_integer():
                return str(int(value))  # a spreadsheet's 1001.0
            return str(value) if isinstance(value, int | float | str) else value
        if kind == "int":
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                value = float(value.strip()) if "." in value else int(value.strip())
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return value
        if kind == "epoch_ms":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
            if isinstance(value, str) and value.strip().isdigit():
                return int(value.strip())
            return int(_datetime(value).timestamp() * 1000) if isinstance(value, str) else value
        if kind == "datetime":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value / 1000, UTC).isoformat()
            return _datetime(value).isoformat() if isinstance(value, str) else value
        if kind == "date":
            return _date(value, ZoneInfo(tz))
    except (ValueError, OverflowError):
        return value
    raise ValueError(f"unknown type {kind}")


def _datetime(text: str) -> datetime:
    """An ISO date-time; naive ones (Odoo's ``2026-11-28 08:00:00``) are UTC."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _date(value: Any, zone: ZoneInfo) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, zone).date().isoformat()
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, zone).date().isoformat()
    if len(text) == 10:
        return date.fromisoformat(text).isoformat()
    # A date-time (a date widget sends midnight local time in UTC): the day where it is meant.
    return _datetime(text).astimezone(zone).date().isoformat()


def load_file(path: Path) -> Connector:
    """Load and validate one connector file; raises ConnectorFileError naming the field."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConnectorFileError(f"{path}: cannot read: {exc}") from None
    try:
        return Connector.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise ConnectorFileError(f"{path}: {where}: {first['msg']}") from None


class Registry:
    """The connectors by name: the shipped presets, then a site's own files (which win)."""

    def __init__(self, extra_dir: Path | str | None = None) -> None:
        self.dirs = [SHIPPED_DIR] + ([Path(extra_dir)] if extra_dir else [])
        self.connectors: dict[str, Connector] = {}
        self.files: dict[str, Path] = {}
        for folder in self.dirs:
            for path in sorted(folder.glob("*")) if folder.is_dir() else []:
                if path.suffix in SUFFIXES:
                    connector = load_file(path)
                    self.connectors[connector.name] = connector
                    self.files[connector.name] = path

    def get(self, name: str) -> Connector:
        """The connector called ``name``; raises UnknownSource."""
        try:
            return self.connectors[name]
        except KeyError:
            raise UnknownSource(name) from None

    def add(self, connector: Connector) -> None:
        """Register (or replace) a connector, e.g. one loaded from a file being checked."""
        self.connectors[connector.name] = connector

    def names(self) -> list[str]:
        return sorted(self.connectors)


_default: Registry | None = None


def default_registry() -> Registry:
    """The shipped presets plus ``LOOPLINE_CONNECTORS_DIR``'s, loaded once per process."""
    global _default
    if _default is None:
        from loopline.settings import Settings

        _default = Registry(Settings().connectors_dir)
    return _default
