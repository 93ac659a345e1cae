"""The CRM APIs Loopline calls: fetching what a webhook leaves out, and writing back.

HubSpot and Odoo webhooks name a deal or an order but not its lines (and Salesforce's outbound
message carries one object's fields): ``fetch_for`` reads them through the CRM's API and the
connector's field paths read the answer under ``_fetched``. ``write_back`` sends the promise,
ETA, risk and status to the CRM's own record (the connector's ``writeback.fields`` say which
CRM field holds each); the outbox relay calls it, with its retries, backoff and dead letters.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from loopline.ingest.crm.connector import ApiSpec, ReconcileSpec

TIMEOUT_S = 5.0
SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
HUBSPOT_LINE_PROPERTIES = ["hs_sku", "quantity", "name"]


class FetchError(Exception):
    """A CRM API call that failed or answered something unusable."""


def _env(name: str | None, what: str) -> str:
    value = os.environ.get(name) if name else None
    if not value:
        raise FetchError(f"{what} is not configured (set {name or 'its _env setting'})")
    return value


def base_url(api: ApiSpec) -> str:
    """The API's base URL: ``base_url_env``'s value when set, else ``base_url``."""
    url = (os.environ.get(api.base_url_env) if api.base_url_env else None) or api.base_url
    if not url:
        raise FetchError(f"no base URL for the {api.kind} API (set base_url or base_url_env)")
    return url.rstrip("/")


def _headers(api: ApiSpec) -> dict[str, str]:
    return {"authorization": f"Bearer {_env(api.token_env, 'the API token')}"}


def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, url, timeout=TIMEOUT_S, **kwargs)
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    if response.status_code >= 300:
        raise FetchError(f"HTTP {response.status_code} from {url}: {response.text[:200]}")
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise FetchError(f"{url} answered something that is not JSON") from None


def _with_client(client: httpx.Client | None) -> tuple[httpx.Client, bool]:
    return (client, False) if client is not None else (httpx.Client(timeout=TIMEOUT_S), True)


def fetch_for(api: ApiSpec, record: dict[str, Any], client: httpx.Client | None) -> dict[str, Any]:
    """What the CRM's API adds to ``record`` (read under ``_fetched``); raises FetchError."""
    http, own = _with_client(client)
    try:
        if api.kind == "hubspot":
            return _hubspot_deal(http, api, record)
        if api.kind == "odoo":
            return _odoo_order(http, api, record)
        if api.kind == "salesforce":
            return _salesforce_opportunity(http, api, record)
        raise FetchError(f"the {api.kind} API has nothing to fetch")
    finally:
        if own:
            http.close()


# --- HubSpot -------------------------------------------------------------------------------


def _hubspot_deal(http: httpx.Client, api: ApiSpec, record: dict[str, Any]) -> dict[str, Any]:
    """The deal's properties, its first company and its line items (CRM API v3)."""
    if str(record.get("subscriptionType", "")).endswith(".deletion"):
        return {}  # the deal is gone: a cancel needs only its id
    deal_id = str(record.get("objectId", ""))
    if not deal_id.isdigit():
        raise FetchError(f"objectId '{deal_id}' is not a HubSpot id")
    base, headers = base_url(api), _headers(api)
    deal = _call(
        http,
        "GET",
        f"{base}/crm/v3/objects/deals/{deal_id}",
        headers=headers,
        params={"properties": ",".join(api.properties), "associations": "line_items,companies"},
    )
    assoc = deal.get("associations") or {}
    line_ids = [r["id"] for r in (assoc.get("line items") or {}).get("results", [])]
    company_ids = [r["id"] for r in (assoc.get("companies") or {}).get("results", [])]
    lines: list[dict[str, Any]] = []
    if line_ids:
        found = _call(
            http,
            "POST",
            f"{base}/crm/v3/objects/line_items/batch/read",
            headers=headers,
            json={
                "properties": HUBSPOT_LINE_PROPERTIES,
                "inputs": [{"id": i} for i in line_ids],
            },
        )
        by_id = {r["id"]: r.get("properties") or {} for r in found.get("results", [])}
        lines = [by_id[i] for i in line_ids if i in by_id]  # in the deal's order
    company: dict[str, Any] = {}
    if company_ids:
        got = _call(
            http,
            "GET",
            f"{base}/crm/v3/objects/companies/{company_ids[0]}",
            headers=headers,
            params={"properties": "name"},
        )
        company = {"id": got.get("id"), **(got.get("properties") or {})}
    return {
        "deal": {"id": deal.get("id"), **(deal.get("properties") or {})},
        "line_items": lines,
        "company": company,
    }


# HubSpot's batch endpoints take at most this many ids a call.
HUBSPOT_BATCH = 100


def fetch_batch(
    api: ApiSpec, records: list[dict[str, Any]], client: httpx.Client | None
) -> list[dict[str, Any] | FetchError] | None:
    """``fetch_for`` of each of one delivery's records in a few batch calls, where the CRM's
    API has them (None: it has none, read them one by one); a record that could not be
    read is its FetchError. Raises FetchError when a call itself fails.

    Why: HubSpot allows a private app about 100 calls per 10 seconds; three a deal (the
    deal, its line items, its company) ran a delivery of 100 deals into that limit, where
    the batch endpoints take five calls for all of them."""
    if api.kind != "hubspot":
        return None
    http, own = _with_client(client)
    try:
        return _hubspot_deals(http, api, records)
    finally:
        if own:
            http.close()


def _hubspot_deals(
    http: httpx.Client, api: ApiSpec, records: list[dict[str, Any]]
) -> list[dict[str, Any] | FetchError]:
    """``_hubspot_deal`` for many records: deals, their associations (CRM API v4), line
    items and companies, each kind read in batches."""
    out: list[dict[str, Any] | FetchError | None] = [None] * len(records)
    wanted: list[str] = []
    for i, record in enumerate(records):
        deal_id = str(record.get("objectId", ""))
        if str(record.get("subscriptionType", "")).endswith(".deletion"):
            out[i] = {}  # the deal is gone: a cancel needs only its id
        elif not deal_id.isdigit():
            out[i] = FetchError(f"objectId '{deal_id}' is not a HubSpot id")
        else:
            wanted.append(deal_id)
    ids = list(dict.fromkeys(wanted))
    base, headers = base_url(api), _headers(api)

    def batches(path: str, keys: list[str], **body: Any) -> list[dict[str, Any]]:
        """The results of POSTing ``keys`` to a batch endpoint, at most HUBSPOT_BATCH a call."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(keys, HUBSPOT_BATCH):
            got = _call(
                http,
                "POST",
                f"{base}{path}",
                headers=headers,
                json={**body, "inputs": [{"id": k} for k in chunk]},
            )
            results += (got or {}).get("results") or []
        return results

    def read(kind: str, keys: list[str], properties: list[str]) -> dict[str, dict[str, Any]]:
        found = batches(f"/crm/v3/objects/{kind}/batch/read", keys, properties=properties)
        return {str(r.get("id")): r for r in found}

    def associated(kind: str) -> dict[str, list[str] | None]:
        # None for a deal whose associations come in pages: read alone (rare: > 500).
        to: dict[str, list[str] | None] = {}
        for row in batches(f"/crm/v4/associations/deals/{kind}/batch/read", ids):
            deal = str((row.get("from") or {}).get("id"))
            paged = bool(row.get("paging"))
            to[deal] = None if paged else [str(t["toObjectId"]) for t in row.get("to") or []]
        return to

    deals = read("deals", ids, list(api.properties)) if ids else {}
    ids = [i for i in ids if i in deals]
    lines_of = associated("line_items") if ids else {}
    companies_of = associated("companies") if ids else {}
    line_ids = [x for i in ids for x in lines_of.get(i) or []]
    lines = read("line_items", list(dict.fromkeys(line_ids)), HUBSPOT_LINE_PROPERTIES)
    company_of = {i: next(iter(companies_of.get(i) or []), "") for i in ids}  # the first
    companies = read(
        "companies", list(dict.fromkeys(c for c in company_of.values() if c)), ["name"]
    )
    answers: dict[str, dict[str, Any] | FetchError] = {}
    for deal_id in ids:
        if lines_of.get(deal_id, []) is None or companies_of.get(deal_id, []) is None:
            try:
                answers[deal_id] = _hubspot_deal(http, api, {"objectId": deal_id})
            except FetchError as exc:
                answers[deal_id] = exc
            continue
        deal = deals[deal_id]
        company = companies.get(company_of[deal_id])
        answers[deal_id] = {
            "deal": {"id": deal.get("id"), **(deal.get("properties") or {})},
            "line_items": [
                lines[x].get("properties") or {}
                for x in lines_of.get(deal_id) or []
                if x in lines  # in the deal's order
            ],
            "company": {"id": company.get("id"), **(company.get("properties") or {})}
            if company
            else {},
        }
    for i, record in enumerate(records):
        if out[i] is None:
            deal_id = str(record.get("objectId", ""))
            out[i] = answers.get(deal_id) or FetchError(f"HubSpot has no deal {deal_id}")
    return [o for o in out if o is not None]


# --- Odoo (JSON-RPC) -----------------------------------------------------------------------


class _Odoo:
    """Odoo's external API over JSON-RPC (``/jsonrpc``), signed in with a user's API key."""

    def __init__(self, http: httpx.Client, api: ApiSpec) -> None:
        self.http, self.url = http, f"{base_url(api)}/jsonrpc"
        self.db = (os.environ.get(api.database_env) if api.database_env else None) or api.database
        if not self.db:
            raise FetchError("no Odoo database configured (database or database_env)")
        self.key = _env(api.token_env, "the Odoo API key")
        login = _env(api.login_env, "the Odoo login")
        uid = self._rpc("common", "login", [self.db, login, self.key])
        if not isinstance(uid, int) or uid <= 0:
            raise FetchError(f"Odoo refused the login of '{login}'")
        self.uid = uid

    def _rpc(self, service: str, method: str, args: list[Any]) -> Any:
        answer = _call(
            self.http,
            "POST",
            self.url,
            json={
                "jsonrpc": "2.0",
                "method": "call",
                "params": {"service": service, "method": method, "args": args},
                "id": 1,
            },
        )
        if not isinstance(answer, dict):
            raise FetchError("Odoo answered something that is not JSON-RPC")
        if answer.get("error"):
            error = answer["error"]
            message = (error.get("data") or {}).get("message") or error.get("message")
            raise FetchError(f"Odoo: {message}")
        return answer.get("result")

    def execute(self, model: str, method: str, args: list[Any], **kw: Any) -> Any:
        return self._rpc(
            "object", "execute_kw", [self.db, self.uid, self.key, model, method, args, kw]
        )


def _odoo_order(http: httpx.Client, api: ApiSpec, record: dict[str, Any]) -> dict[str, Any]:
    """The order's lines (product code and quantity) and its customer, for a webhook that
    sends ``order_line`` and ``partner_id`` as ids (Odoo 17's ``read(load=None)``)."""
    line_ids = record.get("order_line")
    if not isinstance(line_ids, list) or not line_ids:
        return {}  # a cancel, or an order without lines: the mapping decides
    if not all(isinstance(i, int) for i in line_ids):
        raise FetchError("order_line must be a list of ids")
    odoo = _Odoo(http, api)
    rows = odoo.execute(
        "sale.order.line",
        "read",
        [line_ids],
        fields=["product_id", "product_uom_qty", "display_type"],
    )
    rows = [r for r in rows if not r.get("display_type")]  # section and note lines
    product_ids = sorted({r["product_id"][0] for r in rows if r.get("product_id")})
    products = odoo.execute("product.product", "read", [product_ids], fields=["default_code"])
    codes = {p["id"]: p.get("default_code") for p in products}
    lines = [
        {
            "default_code": codes.get(r["product_id"][0]) if r.get("product_id") else None,
            "product_uom_qty": r.get("product_uom_qty"),
        }
        for r in rows
    ]
    partner: dict[str, Any] = {}
    partner_id = record.get("partner_id")
    if isinstance(partner_id, list):  # [id, name] when read with names
        partner_id = partner_id[0]
    if isinstance(partner_id, int):
        (partner,) = odoo.execute("res.partner", "read", [[partner_id]], fields=["name", "ref"])
    return {"lines": lines, "partner": partner}


# --- Salesforce (REST) ---------------------------------------------------------------------


def _salesforce_id(value: Any) -> str:
    text = str(value or "")
    if not SALESFORCE_ID.match(text):  # it goes into SOQL: only an id may
        raise FetchError(f"'{text[:40]}' is not a Salesforce id")
    return text


def _salesforce_opportunity(
    http: httpx.Client, api: ApiSpec, record: dict[str, Any]
) -> dict[str, Any]:
    """The opportunity's account and line items, by one SOQL query over REST."""
    sobject = record.get("sObject") or {}
    if str(sobject.get("IsDeleted", "")).lower() == "true":
        return {}
    opp = _salesforce_id(sobject.get("Id"))
    soql = (
        "SELECT Account.Name, Account.AccountNumber, "
        "(SELECT ProductCode, Quantity FROM OpportunityLineItems ORDER BY SortOrder) "
        f"FROM Opportunity WHERE Id = '{opp}'"
    )
    found = _call(
        http,
        "GET",
        f"{base_url(api)}/services/data/{api.api_version}/query",
        headers=_headers(api),
        params={"q": soql},
    )
    records = found.get("records") or []
    if not records:
        raise FetchError(f"opportunity {opp} not found")
    row = records[0]
    items = (row.get("OpportunityLineItems") or {}).get("records") or []
    return {"account": row.get("Account") or {}, "lines": items}


# --- write-back ----------------------------------------------------------------------------


def crm_values(api: ApiSpec, payload: dict[str, Any]) -> dict[str, Any]:
    """The feedback payload as the CRM's fields: ``writeback.fields`` names them, and
    ``writeback.values`` maps values (e.g. risk words to a picklist's)."""
    out: dict[str, Any] = {}
    for key, crm_field in api.fields.items():
        if key not in payload:
            continue
        value = payload[key]
        if isinstance(value, str) and value in api.values.get(key, {}):
            value = api.values[key][value]
        out[crm_field] = value
    return out


def write_back(
    api: ApiSpec, *, ref: str, order_id: str, payload: dict[str, Any], client: httpx.Client
) -> None:
    """Write one order's feedback to its CRM record ``ref``; raises FetchError."""
    values = crm_values(api, payload)
    if not values:
        return  # nothing this CRM keeps changed
    base = base_url(api)
    if api.kind == "jiandaoyun":
        data = {f: {"value": _jdy_value(v, api)} for f, v in values.items()}
        answer = _call(
            client,
            "POST",
            f"{base}/api/v5/app/entry/data/update",
            headers=_headers(api),
            # Why no trigger: an update by Loopline must not start the form's workflows
            # (and its push comes back as a new version that changes nothing).
            json={
                "app_id": api.app_id,
                "entry_id": api.entry_id,
                "data_id": ref,
                "data": data,
                "is_start_trigger": False,
            },
        )
        if isinstance(answer, dict) and answer.get("code"):
            raise FetchError(f"Jiandaoyun: {answer.get('msg') or answer['code']}")
    elif api.kind == "hubspot":
        if not ref.isdigit():
            raise FetchError(f"'{ref}' is not a HubSpot deal id")
        _call(
            client,
            "PATCH",
            f"{base}/crm/v3/objects/deals/{ref}",
            headers=_headers(api),
            json={"properties": {k: _text(v) for k, v in values.items()}},
        )
    elif api.kind == "salesforce":
        _call(
            client,
            "PATCH",
            f"{base}/services/data/{api.api_version}/sobjects/{api.object or 'Opportunity'}/"
            f"{_salesforce_id(ref)}",
            headers=_headers(api),
            json=values,
        )
    elif api.kind == "odoo":
        if not ref.isdigit():
            raise FetchError(f"'{ref}' is not an Odoo record id")
        odoo = _Odoo(client, api)
        odoo.execute(api.object or "sale.order", "write", [[int(ref)], values])
    elif api.kind == "json":
        _call(
            client,
            "POST",
            base,
            headers=_headers(api),
            json={"order_id": order_id, "ref": ref, **values},
        )
    else:
        raise FetchError(f"no write-back for the {api.kind} API")


def _text(value: Any) -> str:
    """HubSpot properties are strings ("" clears one)."""
    return "" if value is None else str(value)


def _jdy_value(value: Any, api: ApiSpec) -> Any:
    """A date for a Jiandaoyun date widget: local midnight as an ISO date-time."""
    if isinstance(value, str) and len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return value
        zone = ZoneInfo(api.tz)
        return datetime(day.year, day.month, day.day, tzinfo=zone).isoformat()
    return value


# --- reconciliation reads ------------------------------------------------------------------
# Each CRM's records are read in its webhook's shape, so the connector's own field mapping
# maps them (and its ``fetch`` adds what the webhook would leave out).

ODOO_WEBHOOK_FIELDS = [
    "name",
    "partner_id",
    "order_line",
    "commitment_date",
    "validity_date",
    "state",
    "write_date",
    "user_id",
]
SALESFORCE_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def read_open(api: ApiSpec, spec: ReconcileSpec, client: httpx.Client) -> list[dict[str, Any]]:
    """The CRM's open orders (``spec``'s filter), webhook-shaped; raises FetchError."""
    return _read(api, spec, None, client)[0]


def read_orders(
    api: ApiSpec, spec: ReconcileSpec, order_ids: list[str], client: httpx.Client
) -> tuple[list[dict[str, Any]], list[str]]:
    """The orders named (open or not), webhook-shaped, and the ids the CRM no longer has."""
    if not order_ids:
        return [], []
    return _read(api, spec, order_ids, client)


def _read(
    api: ApiSpec, spec: ReconcileSpec, ids: list[str] | None, client: httpx.Client
) -> tuple[list[dict[str, Any]], list[str]]:
    readers = {
        "odoo": _odoo_read,
        "hubspot": _hubspot_read,
        "salesforce": _salesforce_read,
        "jiandaoyun": _jdy_read,
    }
    reader = readers.get(api.kind)
    if reader is None:
        raise FetchError(f"no reconciliation read for the {api.kind} API")
    found: list[dict[str, Any]] = []
    for chunk in [ids] if ids is None else _chunks(ids, spec.page_size):
        found += reader(client, api, spec, chunk)
    if ids is None:
        return found, []
    wanted = set(ids)
    seen = {str(r.get("_order_id")) for r in found}
    return [r for r in found if str(r.get("_order_id")) in wanted], [
        i for i in ids if i not in seen
    ]


def _chunks(ids: list[str], n: int) -> list[list[str]]:
    return [ids[i : i + n] for i in range(0, len(ids), n)]


def _odoo_read(
    http: httpx.Client, api: ApiSpec, spec: ReconcileSpec, ids: list[str] | None
) -> list[dict[str, Any]]:
    """``search_read`` on the order model: the open ones or those named (by ``order_field``)."""
    odoo = _Odoo(http, api)
    domain: list[Any] = []
    if ids is None and spec.open_field and spec.open_in:
        domain.append([spec.open_field, "in", spec.open_in])
    if ids is None and spec.open_field and spec.open_not_in:
        domain.append([spec.open_field, "not in", spec.open_not_in])
    if ids is not None:
        domain.append([spec.order_field, "in", ids])
    model = api.object or "sale.order"
    fields = spec.read or ODOO_WEBHOOK_FIELDS
    out, offset = [], 0
    while True:
        rows = odoo.execute(
            model,
            "search_read",
            [domain],
            fields=fields,
            offset=offset,
            limit=spec.page_size,
            order="id",
        )
        if not isinstance(rows, list):
            raise FetchError("Odoo's search_read answered something that is not a list")
        for row in rows:
            # search_read names many2one fields ([id, name]); the webhook sends ids only.
            shaped = {
                k: (v[0] if isinstance(v, list) and k in ("partner_id", "user_id") else v)
                for k, v in row.items()
            }
            out.append(
                {"_id": row["id"], "_model": model, "_order_id": row.get(spec.order_field)} | shaped
            )
        if len(rows) < spec.page_size:
            return out
        offset += len(rows)


def _hubspot_event(deal: dict[str, Any], *, deleted: bool = False) -> dict[str, Any]:
    """A deal as its webhook event names it (its lines are fetched as a webhook's are)."""
    props = deal.get("properties") or {}
    changed = (deal.get("archivedAt") if deleted else props.get("hs_lastmodifieddate")) or deal.get(
        "updatedAt"
    )
    if not changed:
        raise FetchError(f"deal {deal.get('id')} has no hs_lastmodifieddate")
    return {
        "objectId": int(deal["id"]),
        "subscriptionType": "deal.deletion" if deleted else "deal.propertyChange",
        "occurredAt": int(_iso(str(changed)).timestamp() * 1000),
        "_order_id": str(deal["id"]),
    }


def _hubspot_read(
    http: httpx.Client, api: ApiSpec, spec: ReconcileSpec, ids: list[str] | None
) -> list[dict[str, Any]]:
    """Open deals through the CRM search API (paged by ``after``); named deals by batch
    read, archived ones (deleted in HubSpot) as deletions."""
    base, headers = base_url(api), _headers(api)
    props = list(dict.fromkeys(["hs_lastmodifieddate", *spec.read]))
    if ids is not None:
        if not all(i.isdigit() for i in ids):
            raise FetchError("HubSpot deal ids are numbers")
        out = []
        for archived in (False, True):
            got = _call(
                http,
                "POST",
                f"{base}/crm/v3/objects/deals/batch/read",
                headers=headers,
                params={"archived": str(archived).lower()},
                json={"properties": props, "inputs": [{"id": i} for i in ids]},
            )
            found = (got or {}).get("results") or []
            out += [_hubspot_event(d, deleted=archived) for d in found]
            ids = [i for i in ids if i not in {str(d.get("id")) for d in found}]
            if not ids:
                break
        return out
    filters: list[dict[str, Any]] = []
    if spec.open_field and spec.open_in:
        filters.append({"propertyName": spec.open_field, "operator": "IN", "values": spec.open_in})
    if spec.open_field and spec.open_not_in:
        filters.append(
            {"propertyName": spec.open_field, "operator": "NOT_IN", "values": spec.open_not_in}
        )
    out, after = [], None
    while True:
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "properties": props,
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": spec.page_size,
        }
        if after is not None:
            body["after"] = after
        got = _call(http, "POST", f"{base}/crm/v3/objects/deals/search", headers=headers, json=body)
        out += [_hubspot_event(d) for d in (got or {}).get("results") or []]
        after = (((got or {}).get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return out


def _soql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _salesforce_read(
    http: httpx.Client, api: ApiSpec, spec: ReconcileSpec, ids: list[str] | None
) -> list[dict[str, Any]]:
    """One SOQL query over REST (``queryAll`` for named records: deleted ones come with
    IsDeleted), following ``nextRecordsUrl``; values as the outbound message sends them."""
    fields = list(dict.fromkeys(["Id", "LastModifiedDate", "IsDeleted", *spec.read]))
    bad = [f for f in fields if not SALESFORCE_FIELD.match(f)]
    if bad:
        raise FetchError(f"'{bad[0]}' is not a Salesforce field name")
    sobject = api.object or "Opportunity"
    where: list[str] = []
    if ids is not None:
        where.append(
            f"{spec.order_field} IN ({', '.join(_soql_text(_salesforce_id(i)) for i in ids)})"
        )
    elif spec.open_field and spec.open_in:
        where.append(f"{spec.open_field} IN ({', '.join(map(_soql_text, spec.open_in))})")
    elif spec.open_field and spec.open_not_in:
        where.append(f"{spec.open_field} NOT IN ({', '.join(map(_soql_text, spec.open_not_in))})")
    soql = f"SELECT {', '.join(fields)} FROM {sobject}"
    if where:
        soql += " WHERE " + " AND ".join(where)
    base = base_url(api)
    endpoint = "queryAll" if ids is not None else "query"
    got = _call(
        http,
        "GET",
        f"{base}/services/data/{api.api_version}/{endpoint}",
        headers=_headers(api),
        params={"q": soql},
    )
    out = []
    while True:
        for row in (got or {}).get("records") or []:
            sobj = {k: _sf_text(v) for k, v in row.items() if k != "attributes"}
            out.append(
                {
                    "Id": f"reconcile:{row.get('Id')}",
                    "sObject": sobj,
                    "_order_id": sobj.get(spec.order_field),
                }
            )
        following = (got or {}).get("nextRecordsUrl")
        if (got or {}).get("done", True) or not following:
            return out
        got = _call(http, "GET", f"{base}{following}", headers=_headers(api))


def _sf_text(value: Any) -> Any:
    """A REST value as the outbound message's XML carries it (text; a nil stays None)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r".*T.*[+-]\d{4}", value):
        return value[:-5] + value[-5:-2] + ":" + value[-2:]  # 2026-11-28T08:00:00.000+0000
    return value


def _jdy_read(
    http: httpx.Client, api: ApiSpec, spec: ReconcileSpec, ids: list[str] | None
) -> list[dict[str, Any]]:
    """The form's records through the data list API (paged by the last ``data_id``),
    filtered by ``spec`` or by the order ids; each as a ``data_update`` push."""
    cond: list[dict[str, Any]] = []
    if ids is not None:
        cond.append({"field": spec.order_field, "method": "in", "value": ids})
    elif spec.open_field and spec.open_in:
        cond.append({"field": spec.open_field, "method": "in", "value": spec.open_in})
    elif spec.open_field and spec.open_not_in:
        cond.append({"field": spec.open_field, "method": "nin", "value": spec.open_not_in})
    out, last = [], None
    while True:
        body: dict[str, Any] = {
            "app_id": api.app_id,
            "entry_id": api.entry_id,
            "limit": spec.page_size,
        }
        if spec.read:
            body["fields"] = list(dict.fromkeys(["updateTime", spec.order_field, *spec.read]))
        if cond:
            body["filter"] = {"rel": "and", "cond": cond}
        if last is not None:
            body["data_id"] = last
        got = _call(
            http,
            "POST",
            f"{base_url(api)}/api/v5/app/entry/data/list",
            headers=_headers(api),
            json=body,
        )
        if isinstance(got, dict) and got.get("code"):
            raise FetchError(f"Jiandaoyun: {got.get('msg') or got['code']}")
        rows = (got or {}).get("data")
        if not isinstance(rows, list):
            raise FetchError("Jiandaoyun's data list answered no data list")
        for row in rows:
            changed = row.get("updateTime")
            stamp = int(_iso(str(changed)).timestamp() * 1000) if changed else None
            out.append(
                {
                    "op": "data_update",
                    "data": row,
                    "opTime": stamp,
                    "_order_id": row.get(spec.order_field),
                }
            )
        if len(rows) < spec.page_size:
            return out
        last = rows[-1].get("_id")


def _iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo("UTC"))
