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

from loopline.ingest.crm.connector import ApiSpec

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


def list_records(
    api: ApiSpec, *, open_only: bool, names: list[str] | None, client: httpx.Client
) -> list[dict[str, Any]]:
    """The CRM's orders in its webhook's shape: the open ones, or those named; raises
    FetchError (only Odoo's read API is known here)."""
    if api.kind != "odoo":
        raise FetchError(f"no reconciliation read for the {api.kind} API")
    odoo = _Odoo(client, api)
    domain: list[Any] = [["state", "in", ["sale", "done"]]] if open_only else []
    if names is not None:
        domain.append(["name", "in", names])
    rows = odoo.execute(
        api.object or "sale.order", "search_read", [domain], fields=ODOO_WEBHOOK_FIELDS
    )
    out = []
    for row in rows:
        # search_read names many2one fields ([id, name]); the webhook sends ids only.
        shaped = {
            k: (v[0] if isinstance(v, list) and k in ("partner_id", "user_id") else v)
            for k, v in row.items()
        }
        out.append({"_id": row["id"], "_model": api.object or "sale.order", **shaped})
    return out
