"""Reconciliation against HubSpot, Salesforce and Jiandaoyun (local servers play each read
API, paged two records a page): a first pull takes the CRM's open orders in; then an update,
a cancel or deletion and a new order that never arrived are repaired, each recorded, while a
change of nothing Loopline keeps (its own write-back, say) is not; a second pull finds nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from loopline.ingest.crm.connector import Connector, default_registry
from loopline.ingest.crm.reconcile import reconcile
from loopline.models.intake import apply_received
from loopline.models.records import AuditEntry, Order
from tests.ingest.crm.fake_api import FakeApi


def paged(connector: Connector, n: int = 2) -> Connector:
    """The preset, reading ``n`` records a page (so every read pages)."""
    assert connector.reconcile is not None
    spec = connector.reconcile.model_copy(update={"page_size": n})
    return connector.model_copy(update={"reconcile": spec})


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def scenario(sessions, connector: Connector, crm: Any, first: set[str]) -> None:
    """The shared story; ``crm`` has ``change(id)``, ``cancel(id)``, ``add(id)``, ``touch(id)``."""
    result = reconcile(sessions, connector)
    assert set(result.repaired) == first and result.failed == {}
    assert set(result.repaired.values()) == {"missing"}
    apply_received(sessions, gate=None)
    with sessions() as s:
        before = s.scalar(select(func.max(AuditEntry.id)))
    crm.change("A")  # an update that never arrived: a new quantity and due date
    crm.cancel("B")  # cancelled (or deleted) there; that never arrived either
    crm.add("C")  # confirmed there, never arrived at all
    crm.touch("D")  # a newer version, but nothing Loopline keeps changed
    unchanged: dict[str, int] = {}  # what the periodic pull keeps between runs
    result = reconcile(sessions, connector, unchanged=unchanged)
    ids = {name: crm.order_id(name) for name in "ABCD"}
    assert set(result.repaired) == {ids["A"], ids["B"], ids["C"]}, result
    assert result.repaired[ids["C"]] == "missing" and result.failed == {}
    assert result.repaired[ids["B"]].startswith(("cancelled in the CRM", "deleted in the CRM"))
    apply_received(sessions, gate=None)
    with sessions() as s:
        a = s.get(Order, ids["A"])
        assert [(ln.sku, ln.qty) for ln in a.lines] == [("P1", 750)]
        assert a.requested_date.isoformat() == "2026-12-24"
        assert s.get(Order, ids["B"]).status == "cancelled"
        assert s.get(Order, ids["C"]).status == "open"
        repairs = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "order.repaired", AuditEntry.id > before)
        ).all()
        assert {a.entity_id for a in repairs} == {ids["A"], ids["B"], ids["C"]}
        assert all(a.actor == "reconcile" for a in repairs)
        assert {a.details["source"] for a in repairs} == {connector.name}
    assert unchanged == {ids["D"]: unchanged[ids["D"]]}
    assert reconcile(sessions, connector, unchanged=unchanged).repaired == {}


# --- HubSpot: CRM search API, batch read, deal + line items + company ---------------------


class HubSpot:
    """Deals as HubSpot keeps them; the routes of its CRM API v3 that Loopline calls."""

    def __init__(self) -> None:
        self.deals: dict[str, dict[str, Any]] = {}
        self.next_id = 5001
        for name in "ABD":
            self.add(name)
        self.add("X", stage="closedlost")  # a lost deal: not read
        self.searches: list[dict[str, Any]] = []

    def order_id(self, name: str) -> str:
        return next(k for k, d in self.deals.items() if d["name"] == name)

    def add(self, name: str, stage: str = "contractsent") -> None:
        if name == "C" and any(d["name"] == "C" for d in self.deals.values()):
            return
        deal_id = str(self.next_id)
        self.next_id += 1
        self.deals[deal_id] = {
            "name": name,
            "archived": False,
            "lines": [("P1", 500), ("P2", 20)],
            "props": {
                "dealname": f"Deal {name}",
                "closedate": "2026-12-10T00:00:00Z",
                "hs_priority": "high",
                "hubspot_owner_id": "71853204",
                "dealstage": stage,
                "hs_lastmodifieddate": "2026-11-28T08:00:00.000Z",
            },
        }

    def change(self, name: str) -> None:
        d = self.deals[self.order_id(name)]
        d["lines"] = [("P1", 750)]
        d["props"] |= {"closedate": "2026-12-24T00:00:00Z"}
        d["props"]["hs_lastmodifieddate"] = "2026-11-30T09:00:00.000Z"

    def cancel(self, name: str) -> None:
        d = self.deals[self.order_id(name)]
        d["archived"], d["archivedAt"] = True, "2026-11-30T10:00:00.000Z"

    def touch(self, name: str) -> None:
        self.deals[self.order_id(name)]["props"]["hs_lastmodifieddate"] = "2026-11-30T11:00:00.000Z"

    def _object(self, deal_id: str, props: list[str] | None = None) -> dict[str, Any]:
        d = self.deals[deal_id]
        shown = {k: v for k, v in d["props"].items() if props is None or k in props}
        out = {
            "id": deal_id,
            "properties": shown | {"hs_object_id": deal_id},
            "createdAt": "2026-11-27T08:00:00.000Z",
            "updatedAt": d["props"]["hs_lastmodifieddate"],
            "archived": d["archived"],
        }
        if d["archived"]:
            out["archivedAt"] = d["archivedAt"]
        return out

    def search(self, call, match):
        body = call.body
        self.searches.append(body)
        (group,) = body["filterGroups"]
        (flt,) = group["filters"]
        assert flt == {"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedlost"]}
        live = sorted(
            (k for k, d in self.deals.items() if not d["archived"]),
            key=int,
        )
        live = [k for k in live if self.deals[k]["props"]["dealstage"] not in flt["values"]]
        start = int(body.get("after") or 0)
        page = live[start : start + body["limit"]]
        answer: dict[str, Any] = {
            "total": len(live),
            "results": [self._object(k, body["properties"]) for k in page],
        }
        if start + body["limit"] < len(live):
            answer["paging"] = {"next": {"after": str(start + body["limit"])}}
        return 200, answer

    def batch_read(self, call, match):
        archived = call.query.get("archived") == "true"
        ids = [i["id"] for i in call.body["inputs"]]
        found = [
            self._object(i, call.body["properties"])
            for i in ids
            if i in self.deals and self.deals[i]["archived"] == archived
        ]
        missing = [i for i in ids if i not in {f["id"] for f in found}]
        answer: dict[str, Any] = {"status": "COMPLETE", "results": found}
        if missing:  # HubSpot answers 207 naming what it did not find
            answer["errors"] = [
                {"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": missing}}
            ]
            answer["numErrors"] = 1
            return 207, answer
        return 200, answer

    def deal(self, call, match):
        deal_id = match.group(1)
        d = self.deals.get(deal_id)
        if d is None or d["archived"]:
            return 404, {"status": "error", "category": "OBJECT_NOT_FOUND"}
        out = self._object(deal_id)
        out["associations"] = {
            "companies": {"results": [{"id": "9876543210", "type": "deal_to_company"}]},
            "line items": {
                "results": [
                    {"id": f"{deal_id}{n}", "type": "deal_to_line_item"}
                    for n in range(len(d["lines"]))
                ]
            },
        }
        return 200, out

    def line_items(self, call, match):
        out = []
        for item in call.body["inputs"]:
            deal_id, n = item["id"][:-1], int(item["id"][-1])
            sku, qty = self.deals[deal_id]["lines"][n]
            out.append({"id": item["id"], "properties": {"hs_sku": sku, "quantity": str(qty)}})
        return 200, {"status": "COMPLETE", "results": out[::-1]}  # any order

    def company(self, call, match):
        return 200, {"id": "9876543210", "properties": {"name": "Acme Gears GmbH"}}

    def api(self) -> FakeApi:
        return (
            FakeApi()
            .route("POST", "/crm/v3/objects/deals/search", self.search)
            .route("POST", "/crm/v3/objects/deals/batch/read", self.batch_read)
            .route("GET", r"/crm/v3/objects/deals/(\d+)", self.deal)
            .route("POST", "/crm/v3/objects/line_items/batch/read", self.line_items)
            .route("GET", r"/crm/v3/objects/companies/(\d+)", self.company)
        )


def test_hubspot_deals_are_reconciled_through_the_crm_search_api(sessions, monkeypatch):
    crm = HubSpot()
    monkeypatch.setenv("LOOPLINE_HUBSPOT_TOKEN", "pat-na1-token")
    with crm.api() as api:
        monkeypatch.setenv("LOOPLINE_HUBSPOT_API_URL", api.url)
        connector = paged(default_registry().get("hubspot"))
        first = {crm.order_id(n) for n in "ABD"}
        scenario(sessions, connector, crm, first)
        assert all(c.headers["authorization"] == "Bearer pat-na1-token" for c in api.calls)
        assert any(s.get("after") == "2" for s in crm.searches)  # it paged
        with sessions() as s:
            a = s.get(Order, crm.order_id("A"))
            assert a.customer.name == "Acme Gears GmbH" and a.priority == "high"
            assert a.version == ms("2026-11-30T09:00:00")
        # The touched deal D was fetched once to see that nothing changed, not again.
        d = crm.order_id("D")
        reads = [c for c in api.calls if c.path == f"/crm/v3/objects/deals/{d}"]
        assert len(reads) == 2  # the first pull, and once to see that nothing changed


# --- Salesforce: SOQL over REST (query, queryAll), nextRecordsUrl ------------------------


class Salesforce:
    """Opportunities as Salesforce keeps them; its REST query and queryAll."""

    IDS = {n: f"0065g00000Zb{n}{n}{n}AAV" for n in "ABCDX"}

    def __init__(self) -> None:
        self.opps: dict[str, dict[str, Any]] = {}
        for name in "ABD":
            self.add(name)
        self.add("X")
        self.opps[self.IDS["X"]]["StageName"] = "Closed Lost"
        self.queries: list[str] = []

    def order_id(self, name: str) -> str:
        return self.IDS[name]

    def add(self, name: str) -> None:
        self.opps.setdefault(
            self.IDS[name],
            {
                "Id": self.IDS[name],
                "AccountId": "0015g00000QwErTAAV",
                "CloseDate": "2026-12-10",
                "IsDeleted": False,
                "LastModifiedDate": "2026-11-28T08:00:00.000+0000",
                "Loopline_Priority__c": "High",
                "OwnerId": "0055g00000AbCdEAAV",
                "StageName": "Closed Won",
                "lines": [("P1", 500.0), ("P2", 20.0)],
            },
        )

    def change(self, name: str) -> None:
        self.opps[self.IDS[name]] |= {
            "lines": [("P1", 750.0)],
            "CloseDate": "2026-12-24",
            "LastModifiedDate": "2026-11-30T09:00:00.000+0000",
        }

    def cancel(self, name: str) -> None:  # deleted: in the recycle bin, seen by queryAll
        self.opps[self.IDS[name]] |= {
            "IsDeleted": True,
            "LastModifiedDate": "2026-11-30T10:00:00.000+0000",
        }

    def touch(self, name: str) -> None:
        self.opps[self.IDS[name]]["LastModifiedDate"] = "2026-11-30T11:00:00.000+0000"

    def _row(self, opp: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        url = f"/services/data/v60.0/sobjects/Opportunity/{opp['Id']}"
        return {"attributes": {"type": "Opportunity", "url": url}} | {f: opp[f] for f in fields}

    def _answer(self, rows: list[dict[str, Any]], start: int, key: str) -> dict[str, Any]:
        page = rows[start : start + 2]
        answer: dict[str, Any] = {
            "totalSize": len(rows),
            "done": start + 2 >= len(rows),
            "records": page,
        }
        if not answer["done"]:
            answer["nextRecordsUrl"] = f"/services/data/v60.0/query/{key}-{start + 2}"
        return answer

    def query(self, call, match, *, all_rows: bool = False):
        q = call.query["q"]
        self.queries.append(q)
        one = re.fullmatch(r"SELECT Account\.Name.* WHERE Id = '(\w+)'", q)
        if one:  # the fetch of one opportunity's account and line items
            opp = self.opps[one.group(1)]
            items = [{"ProductCode": s, "Quantity": n} for s, n in opp["lines"]]
            return 200, {
                "totalSize": 1,
                "done": True,
                "records": [
                    {
                        "Account": {"Name": "Acme Gears Ltd", "AccountNumber": "C-9"},
                        "OpportunityLineItems": {
                            "totalSize": len(items),
                            "done": True,
                            "records": items,
                        },
                    }
                ],
            }
        m = re.fullmatch(r"SELECT (.+) FROM Opportunity WHERE (.+)", q)
        assert m, q
        fields = m.group(1).split(", ")
        where = m.group(2)
        rows = sorted(self.opps.values(), key=lambda o: o["Id"])
        if not all_rows:
            rows = [o for o in rows if not o["IsDeleted"]]
        if where.startswith("StageName NOT IN "):
            lost = re.findall(r"'([^']*)'", where)
            rows = [o for o in rows if o["StageName"] not in lost]
        elif where.startswith("Id IN "):
            wanted = re.findall(r"'([^']*)'", where)
            rows = [o for o in rows if o["Id"] in wanted]
        else:
            raise AssertionError(where)
        self._last = [self._row(o, fields) for o in rows]
        return 200, self._answer(self._last, 0, "01gQ")

    def more(self, call, match):
        return 200, self._answer(self._last, int(match.group(1)), "01gQ")

    def api(self) -> FakeApi:
        return (
            FakeApi()
            .route("GET", "/services/data/v60.0/query", self.query)
            .route(
                "GET", "/services/data/v60.0/queryAll", lambda c, m: self.query(c, m, all_rows=True)
            )
            .route("GET", r"/services/data/v60.0/query/01gQ-(\d+)", self.more)
        )


def test_salesforce_opportunities_are_reconciled_through_a_rest_query(sessions, monkeypatch):
    crm = Salesforce()
    monkeypatch.setenv("LOOPLINE_SALESFORCE_TOKEN", "00D-access-token")
    with crm.api() as api:
        monkeypatch.setenv("LOOPLINE_SALESFORCE_API_URL", api.url)
        connector = paged(default_registry().get("salesforce"))
        scenario(sessions, connector, crm, {crm.order_id(n) for n in "ABD"})
        assert any(c.path.endswith("/query/01gQ-2") for c in api.calls)  # it paged
        assert any(c.path.endswith("/queryAll") for c in api.calls)  # the deleted one
        assert "StageName NOT IN ('Closed Lost')" in crm.queries[0]
        with sessions() as s:
            a = s.get(Order, crm.order_id("A"))
            assert a.customer_id == "C-9" and a.priority == "high"
            assert a.version == ms("2026-11-30T09:00:00")


# --- Jiandaoyun: the data list API, paged by data_id --------------------------------------


class Jiandaoyun:
    """A form's records; its data list API (filter ``in`` on a widget, ``data_id`` paging)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.n = 0
        for name in "ABD":
            self.add(name)
        self.bodies: list[dict[str, Any]] = []

    def order_id(self, name: str) -> str:
        return f"SO-JDY-{name}"

    def add(self, name: str) -> None:
        if self.order_id(name) in {r["_widget_1700000000001"] for r in self.records.values()}:
            return
        self.n += 1
        data_id = f"6747f3a2b1c9d80007e4a{self.n:03d}"
        self.records[data_id] = {
            "_id": data_id,
            "appId": "YOUR_APP_ID",
            "entryId": "YOUR_ENTRY_ID",
            "creator": {"name": "张伟", "username": "zhang.wei"},
            "createTime": "2026-11-27T02:14:09.000Z",
            "updateTime": "2026-11-28T08:00:00.123Z",
            "_widget_1700000000001": self.order_id(name),
            "_widget_1700000000002": "C-9",
            "_widget_1700000000003": "上海精密齿轮有限公司",
            "_widget_1700000000004": [
                {"_id": f"{data_id}1", "_widget_1700000000005": "P1", "_widget_1700000000006": 500},
                {"_id": f"{data_id}2", "_widget_1700000000005": "P2", "_widget_1700000000006": 20},
            ],
            "_widget_1700000000007": "2026-12-09T16:00:00.000Z",
            "_widget_1700000000008": "加急",
            "_widget_1700000000009": {"name": "李娜", "username": "li.na"},
        }

    def _find(self, name: str) -> str:
        oid = self.order_id(name)
        return next(k for k, r in self.records.items() if r["_widget_1700000000001"] == oid)

    def change(self, name: str) -> None:
        r = self.records[self._find(name)]
        r["_widget_1700000000004"] = [
            {"_id": "x", "_widget_1700000000005": "P1", "_widget_1700000000006": 750}
        ]
        r["_widget_1700000000007"] = "2026-12-23T16:00:00.000Z"  # 24 Dec in Shanghai
        r["updateTime"] = "2026-11-30T09:00:00.000Z"

    def cancel(self, name: str) -> None:  # removed from the form
        del self.records[self._find(name)]

    def touch(self, name: str) -> None:
        self.records[self._find(name)]["updateTime"] = "2026-11-30T11:00:00.000Z"

    def data_list(self, call, match):
        body = call.body
        self.bodies.append(body)
        assert (body["app_id"], body["entry_id"]) == ("YOUR_APP_ID", "YOUR_ENTRY_ID")
        rows = sorted(self.records.values(), key=lambda r: r["_id"])
        for cond in (body.get("filter") or {}).get("cond", []):
            assert cond["method"] == "in"
            rows = [r for r in rows if r.get(cond["field"]) in cond["value"]]
        if body.get("data_id"):
            rows = [r for r in rows if r["_id"] > body["data_id"]]
        return 200, {"data": rows[: body["limit"]]}

    def api(self) -> FakeApi:
        return FakeApi().route("POST", "/api/v5/app/entry/data/list", self.data_list)


def test_jiandaoyun_records_are_reconciled_through_the_data_list_api(sessions, monkeypatch):
    crm = Jiandaoyun()
    monkeypatch.setenv("LOOPLINE_JDY_API_KEY", "jdy-api-key")
    with crm.api() as api:
        monkeypatch.setenv("LOOPLINE_JDY_API_URL", api.url)
        connector = paged(default_registry().get("jiandaoyun"))
        scenario(sessions, connector, crm, {crm.order_id(n) for n in "ABD"})
        assert any(b.get("data_id") for b in crm.bodies)  # it paged
        by_id = [b for b in crm.bodies if b.get("filter")]
        assert by_id and by_id[0]["filter"]["cond"][0]["value"] == ["SO-JDY-B"]
        assert all(c.headers["authorization"] == "Bearer jdy-api-key" for c in api.calls)
        with sessions() as s:
            a = s.get(Order, "SO-JDY-A")
            assert a.priority == "rush" and a.sales_rep == "li.na"


def test_a_reconcile_section_needs_an_api_with_a_read(tmp_path):
    from loopline.ingest.crm.connector import ConnectorFileError, load_file

    base = (
        "name: x\ntitle: X\nauth: {kind: shared_token, secret_env: T}\n"
        "fields: {kind: {const: upsert}, order_id: id, version: v}\n"
    )
    cases = {
        "reconcile: {order_field: id}\n": "reconcile.api: the connector has no fetch section",
        "writeback: {kind: json, base_url: http://x}\n"
        "reconcile: {api: writeback, order_field: id}\n": "the json API has no read",
        "fetch: {kind: odoo}\nreconcile: {order_field: id, open_in: [a]}\n": "need open_field",
    }
    for extra, message in cases.items():
        path = tmp_path / "x.yaml"
        path.write_text(base + extra)
        with pytest.raises(ConnectorFileError, match=message):
            load_file(path)
    for name in ("odoo", "hubspot", "salesforce", "jiandaoyun"):
        assert default_registry().get(name).read_api is not None
    assert default_registry().get("flatcrm").read_api is None
