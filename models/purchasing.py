"""Purchasing's read side: the open purchase requests a plan raised, and material stock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.clock import iso
from loopline.models.records import BomLine, Material, PurchaseOrder, PurchaseRequest, WorkOrder


def open_purchase_requests(session: Session) -> list[dict[str, Any]]:
    """Open purchase requests, soonest needed first, with the jobs and orders waiting."""
    rows = session.execute(
        select(PurchaseRequest, Material)
        .join(Material, PurchaseRequest.material_id == Material.id)
        .where(PurchaseRequest.status == "open")
        .order_by(PurchaseRequest.needed_by, PurchaseRequest.id)
    ).all()
    job_ids = sorted({str(j) for pr, _ in rows for j in pr.jobs})
    order_of: dict[str, str] = {
        wo_id: order_id
        for wo_id, order_id in session.execute(
            select(WorkOrder.id, WorkOrder.order_id).where(WorkOrder.id.in_(job_ids))
        )
    }
    out = []
    for pr, material in rows:
        late_s = (pr.arrives_if_ordered_now - pr.needed_by).total_seconds()
        jobs = [{"job": str(j), "order": order_of.get(str(j))} for j in pr.jobs]
        out.append(
            {
                "id": pr.id,
                "material": material.id,
                "name": material.name,
                "unit": material.unit,
                "qty": round(pr.qty, 3),
                "needed_by": iso(pr.needed_by),
                "arrives_if_ordered_now": iso(pr.arrives_if_ordered_now),
                "late_by_h": round(max(0.0, late_s / 3600), 2),
                "jobs": jobs,
                "orders": sorted({j["order"] for j in jobs if j["order"]}),
                "plan_revision": pr.plan_revision_id,
                "created_at": iso(pr.created_at),
            }
        )
    return out


def materials_view(session: Session) -> dict[str, Any]:
    """Every material with stock, what is on order and what uses it; the BOM per product."""
    bom: dict[str, dict[str, float]] = defaultdict(dict)
    used_in: dict[str, dict[str, float]] = defaultdict(dict)
    for line in session.scalars(select(BomLine).order_by(BomLine.sku, BomLine.material_id)):
        bom[line.sku][line.material_id] = line.qty_per_unit
        used_in[line.material_id][line.sku] = line.qty_per_unit
    on_order: dict[str, list[PurchaseOrder]] = defaultdict(list)
    for po in session.scalars(
        select(PurchaseOrder)
        .where(PurchaseOrder.status == "open")
        .order_by(PurchaseOrder.arrives_at, PurchaseOrder.id)
    ):
        on_order[po.material_id].append(po)
    short = set(
        session.scalars(select(PurchaseRequest.material_id).where(PurchaseRequest.status == "open"))
    )
    materials = [
        {
            "id": m.id,
            "name": m.name,
            "unit": m.unit,
            "on_hand": m.on_hand,
            "lead_time_days": m.lead_time_days,
            "on_order": sum(po.qty for po in on_order[m.id]),
            "purchase_orders": [
                {"id": po.id, "qty": po.qty, "arrives": iso(po.arrives_at)} for po in on_order[m.id]
            ],
            "used_in": used_in.get(m.id, {}),
            "short": m.id in short,
        }
        for m in session.scalars(select(Material).order_by(Material.id))
    ]
    return {"materials": materials, "bom": dict(bom)}


def consume_materials(session: Session, made: Mapping[str, float]) -> None:
    """Take what was made (units per sku, good and scrap alike) out of stock, by the BOMs.

    Called as the shop floor reports progress, so stock on hand stays what is physically
    left, and the next replan nets open work against it. One query for all skus.
    """
    made = {sku: units for sku, units in made.items() if units > 0}
    if not made:
        return
    for line, material in session.execute(
        select(BomLine, Material)
        .join(Material, BomLine.material_id == Material.id)
        .where(BomLine.sku.in_(made))
    ):
        material.on_hand = max(0.0, material.on_hand - line.qty_per_unit * made[line.sku])
