"""Checking a connector against a sample body, without writing anything: what
``loopline connectors check`` prints and the field mapping screen shows (one code path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from loopline.ingest.crm.auth import BadSignature, check_organization
from loopline.ingest.crm.connector import Connector
from loopline.ingest.crm.receive import BadBody, FetchFailed, decode, map_record


@dataclass
class CheckResult:
    """Per record of the sample: its canonical event (None: ignored) or its errors."""

    events: list[dict[str, Any] | None] = field(default_factory=list)
    refs: list[str | None] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_sample(
    connector: Connector, body: bytes, *, client: httpx.Client | None = None
) -> CheckResult:
    """Map every record of ``body`` as the receive path would (no signature check, nothing
    stored). A record holding ``_fetched`` (a recorded API answer) is not fetched again."""
    result = CheckResult()
    try:
        doc = decode(connector, body)
        if connector.auth.kind == "salesforce":
            check_organization(connector.auth, doc)
    except BadBody as bad:
        result.errors += bad.errors
        return result
    except BadSignature as bad:
        result.errors.append({"field": "OrganizationId", "message": str(bad)})
        return result
    records, prefix = connector.split(doc)
    if not records:
        result.errors.append({"field": connector.records or "body", "message": "holds no record"})
    batched = connector.records is not None
    for i, record in enumerate(records):
        here = f"{prefix}[{i}]" if batched else ""
        try:
            event, ref = map_record(connector, record, client, recorded_fetch=True)
        except BadBody as bad:
            for e in bad.errors:
                name = f"{here}.{e['field']}" if here and e["field"] != "body" else here or "body"
                result.errors.append(
                    {"field": name if here else e["field"], "message": e["message"]}
                )
            continue
        except FetchFailed as exc:
            result.errors.append({"field": f"{here or 'body'} (fetch)", "message": str(exc)})
            continue
        result.events.append(event.model_dump(mode="json") if event is not None else None)
        result.refs.append(ref)
    return result
