"""The notification rules file: who hears of what, on which channel, when (docs/notifications.md).

An IT person writes one YAML (or JSON) file, ``LOOPLINE_NOTIFY_RULES``: the channels (an
SMTP server, chat robots, signed webhooks), the people and the roles they hold, the rules
(event -> recipients -> channels, quiet hours) and the escalation chains for alerts. The
file is validated as a whole; every problem names its field (``rules[2].to[0]: ...``).

Recipients are written ``role:NAME``, ``person:ID`` or a bare e-mail address; a role
becomes people through a ``Directory`` (the file's ``people`` for now, the users table
later), so nothing else here knows where people are kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

EVENT_KINDS = (
    "line_down",
    "order_at_risk",
    "promise_broken",
    "rush_accepted",
    "change_waiting",
    "material_short",
    "crm_unreachable",
    # Any other alert (line stopped reporting, MQTT gaps, quarantine ...), by its kind.
    "alert",
)
EventKind = Literal[
    "line_down",
    "order_at_risk",
    "promise_broken",
    "rush_accepted",
    "change_waiting",
    "material_short",
    "crm_unreachable",
    "alert",
]
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
INBOX = "inbox"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpServer(_Strict):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: upgrade a plain connection (port 587); ssl: TLS from the start (465).
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = Field(alias="from")
    timeout_s: float = Field(default=10.0, gt=0)


class _Channel(_Strict):
    # Items of one message at most (a robot message carries several notifications).
    max_batch: int = Field(default=20, ge=1, le=100)
    max_attempts: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)
    # The language of a group's messages (e-mail follows each person's ``lang``).
    lang: Literal["en", "zh-CN"] = "en"


class EmailChannel(_Channel):
    type: Literal["email"]
    smtp: SmtpServer


class WebhookChannel(_Channel):
    """A generic receiver, signed with Standard Webhooks (``whsec_...`` secret)."""

    type: Literal["webhook"]
    url: str
    secret: str

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        if not value.startswith("whsec_"):
            raise ValueError("a Standard Webhooks secret looks like whsec_<base64>")
        return value


class DingTalkChannel(_Channel):
    """A DingTalk group robot; ``secret`` (SEC...) when its security setting is "sign"."""

    type: Literal["dingtalk"]
    url: str
    secret: str | None = None


class WeComChannel(_Channel):
    """A WeCom (WeChat Work) group robot; its URL carries the key."""

    type: Literal["wecom"]
    url: str


class FeishuChannel(_Channel):
    """A Feishu/Lark custom bot; ``secret`` when signature verification is on."""

    type: Literal["feishu"]
    url: str
    secret: str | None = None


Channel = Annotated[
    EmailChannel | WebhookChannel | DingTalkChannel | WeComChannel | FeishuChannel,
    Field(discriminator="type"),
]


class Person(_Strict):
    """Someone notifications can reach; ``id`` is their user name (the users table's later)."""

    id: str
    name: str | None = None
    roles: tuple[str, ...] = ()
    email: str | None = None
    # For @-mentions in chat robots (DingTalk and WeCom mention by mobile number).
    mobile: str | None = None
    lang: Literal["en", "zh-CN"] = "en"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value


def _recipient(value: str) -> str:
    kind, _, name = value.partition(":")
    if kind in ("role", "person") and name and _NAME.match(name):
        return value
    if _EMAIL.match(value):
        return value
    raise ValueError(f"{value!r}: write role:NAME, person:ID or an e-mail address")


Recipient = Annotated[str, AfterValidator(_recipient)]


class QuietHours(_Strict):
    """A daily window (local time) in which chat and mail wait; the inbox still fills.

    ``start`` after ``end`` spans midnight (22:00-06:30). Severities in ``except`` are sent
    at once all the same.
    """

    start: time
    end: time
    tz: str = "UTC"
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday 0 ... Sunday 6
    except_severity: tuple[Severity, ...] = Field(default=("critical",), alias="except")

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def release_at(self, moment: datetime, severity: str) -> datetime | None:
        """When a message made at ``moment`` may leave: None now, else the window's end."""
        if severity in self.except_severity or self.start == self.end:
            return None
        local = moment.astimezone(ZoneInfo(self.tz))
        t = local.time()
        if self.start < self.end:
            inside, opened = self.start <= t < self.end, local.date()
        elif t >= self.start:
            inside, opened = True, local.date()
        else:
            inside, opened = t < self.end, local.date() - timedelta(days=1)
        if not inside or opened.weekday() not in self.days:
            return None
        ends_on = opened if self.start < self.end else opened + timedelta(days=1)
        end = datetime.combine(ends_on, self.end, tzinfo=ZoneInfo(self.tz))
        return end.astimezone(moment.tzinfo)


class Rule(_Strict):
    """When ``event`` happens (and matches), tell ``to`` on each channel of ``via``."""

    name: str
    event: EventKind
    # "alert" rules: which alert kinds (empty: every kind not covered by a named event).
    kinds: tuple[str, ...] = ()
    min_severity: Severity = "info"
    # Alert events: only once the condition has lasted this long (line down > 15 min).
    after_min: float = Field(default=0.0, ge=0.0)
    # Only for these lines / sites / customers (empty: all).
    lines: tuple[str, ...] = ()
    to: tuple[Recipient, ...] = Field(min_length=1)
    via: tuple[str, ...] = (INBOX,)
    quiet_hours: QuietHours | None = None
    # The same condition (an order, a line) is told once per this many minutes at most.
    dedupe_min: float = Field(default=30.0, ge=0.0)


class EscalationPolicy(_Strict):
    """Alerts of ``severity`` (and ``kinds``/``alert_roles`` if given) not acknowledged
    within ``ack_within_min`` go to the next level; level 0 hears when the alert opens."""

    severity: Severity
    kinds: tuple[str, ...] = ()
    alert_roles: tuple[str, ...] = ()
    ack_within_min: float = Field(gt=0.0)
    levels: tuple[tuple[Recipient, ...], ...] = Field(min_length=1)
    via: tuple[str, ...] = (INBOX,)
    quiet_hours: QuietHours | None = None

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        for i, level in enumerate(value):
            if not level:
                raise ValueError(f"level {i} names nobody")
        return value

    def matches(self, *, severity: str, kind: str, role: str) -> bool:
        return (
            severity == self.severity
            and (not self.kinds or kind in self.kinds)
            and (not self.alert_roles or role in self.alert_roles)
        )


class NotifyConfig(_Strict):
    """The whole rules file."""

    version: Literal[1] = 1
    channels: dict[str, Channel] = Field(default_factory=dict)
    people: tuple[Person, ...] = ()
    rules: tuple[Rule, ...] = ()
    escalation: tuple[EscalationPolicy, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> NotifyConfig:
        problems: list[str] = []
        if INBOX in self.channels:
            problems.append(f"channels.{INBOX}: the in-app inbox is built in; pick another name")
        known = set(self.channels) | {INBOX}
        ids = [p.id for p in self.people]
        for i, pid in enumerate(ids):
            if ids.index(pid) != i:
                problems.append(f"people[{i}].id: {pid!r} appears twice")
        names = [r.name for r in self.rules]
        for i, rule in enumerate(self.rules):
            if names.index(rule.name) != i:
                problems.append(f"rules[{i}].name: {rule.name!r} appears twice")
            problems += _check_targets(f"rules[{i}]", rule.via, (rule.to,), known, ids)
        for i, pol in enumerate(self.escalation):
            problems += _check_targets(f"escalation[{i}]", pol.via, pol.levels, known, ids)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def warnings(self) -> list[str]:
        """Roles the rules name that nobody in ``people`` holds (the users table may: their
        inbox entries are then addressed to the role, mail and mentions reach nobody)."""
        held = {r for p in self.people for r in p.roles}
        out = []
        for where, groups in [(f"rules[{i}].to", (r.to,)) for i, r in enumerate(self.rules)] + [
            (f"escalation[{i}].levels", p.levels) for i, p in enumerate(self.escalation)
        ]:
            for group in groups:
                for who in group:
                    kind, _, name = who.partition(":")
                    if kind == "role" and name not in held:
                        out.append(f"{where}: nobody in people holds role {name!r}")
        return list(dict.fromkeys(out))

    def channel(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def escalation_for(self, *, severity: str, kind: str, role: str) -> EscalationPolicy | None:
        """The first escalation policy that covers an alert, if any."""
        for pol in self.escalation:
            if pol.matches(severity=severity, kind=kind, role=role):
                return pol
        return None


def _check_targets(
    where: str,
    via: Sequence[str],
    groups: Sequence[Sequence[str]],
    channels: set[str],
    people: list[str],
) -> list[str]:
    problems = [
        f"{where}.via[{j}]: no channel named {c!r} (known: {', '.join(sorted(channels))})"
        for j, c in enumerate(via)
        if c not in channels
    ]
    field = "to" if len(groups) == 1 and where.startswith("rules") else "levels"
    for g, group in enumerate(groups):
        for j, who in enumerate(group):
            kind, _, name = who.partition(":")
            at = f"{where}.{field}[{j}]" if field == "to" else f"{where}.levels[{g}][{j}]"
            if kind == "person" and name not in people:
                problems.append(f"{at}: no person {name!r} in people")
    return problems


class RulesFileError(ValueError):
    """A rules file that cannot be used; ``errors`` name each failing field."""

    def __init__(self, path: str, errors: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(errors))
        self.path = path
        self.errors = errors


def parse_rules(data: Any, *, source: str = "rules") -> NotifyConfig:
    """Validate a rules document (already decoded); RulesFileError lists every problem."""
    try:
        return NotifyConfig.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = _loc(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:  # the cross-reference check: its own "field: message" parts
                errors += msg.split("; ")
            else:
                errors.append(f"{loc}: {msg}")
        raise RulesFileError(source, errors) from None


def _loc(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("email", "webhook", "dingtalk", "wecom", "feishu") and out.count(".") >= 1:
            continue  # the discriminated union's tag adds nothing for the reader
        else:
            out += f".{part}" if out else str(part)
    return out


def load_rules(path: Path) -> NotifyConfig:
    """Read and validate a rules file (YAML, or JSON, which YAML reads too)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RulesFileError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise RulesFileError(str(path), [f"not YAML/JSON: {exc}"]) from None
    return parse_rules(data if data is not None else {}, source=str(path))


# -- who is behind a role -----------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """One person (or a bare mailbox) as channels reach them."""

    id: str  # person id, or the e-mail address itself
    name: str
    email: str | None = None
    mobile: str | None = None
    lang: Literal["en", "zh-CN"] = "en"


class Directory(Protocol):
    """Turns a recipient (``role:x``, ``person:y``, an address) into the people behind it."""

    def resolve(self, recipient: str) -> list[Address]: ...


class ConfigDirectory:
    """The rules file's ``people`` as the directory (until the users table backs it)."""

    def __init__(self, people: Sequence[Person]) -> None:
        self._people = {p.id: p for p in people}

    def resolve(self, recipient: str) -> list[Address]:
        """The people a recipient stands for (none for an unknown role or person)."""
        kind, _, name = recipient.partition(":")
        if kind == "role":
            return [_address(p) for p in self._people.values() if name in p.roles]
        if kind == "person":
            person = self._people.get(name)
            return [_address(person)] if person else []
        return [Address(id=recipient, name=recipient, email=recipient)]


def _address(p: Person) -> Address:
    return Address(id=p.id, name=p.name or p.id, email=p.email, mobile=p.mobile, lang=p.lang)


class PeopleDirectory:
    """The users table as the directory, beside the rules file's ``people``: a role reaches
    every enabled user holding it (and the file's people with it), a person their user
    record, else the file's entry. A disabled user is told nothing."""

    def __init__(self, sessions: sessionmaker[Session], people: Sequence[Person]) -> None:
        self._sessions = sessions
        self._file = ConfigDirectory(people)

    def resolve(self, recipient: str) -> list[Address]:
        """The people a recipient stands for (none for an unknown role or person)."""
        from loopline.models.users import User  # the users module imports the records'

        kind, _, name = recipient.partition(":")
        if kind not in ("role", "person"):
            return self._file.resolve(recipient)
        with self._sessions() as session:
            users = [u for u in session.scalars(select(User)) if u.disabled_at is None]
        if kind == "person":
            found = [u for u in users if u.username == name]
            return [_user_address(found[0])] if found else self._file.resolve(recipient)
        from_users = {u.username: _user_address(u) for u in users if name in (u.roles or [])}
        from_file = {a.id: a for a in self._file.resolve(recipient)}
        return list({**from_file, **from_users}.values())


def _user_address(user: Any) -> Address:
    if user.lang == "zh-CN":
        return Address(id=user.username, name=user.name, email=user.email, lang="zh-CN")
    return Address(id=user.username, name=user.name, email=user.email, lang="en")
