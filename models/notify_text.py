"""How a notification reads in each language a person or a channel asks for.

English is what the event sources write (``Event.title``/``body``); Chinese is worded
here from the event's details, so a line lead whose language is zh-CN reads 产线 L1 停机
instead of a translated sentence. An event without a Chinese wording stays English.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.models.notify import Event

LANGUAGES = ("en", "zh-CN")


def _v(d: dict[str, Any], key: str, default: str = "—") -> str:
    value = d.get(key)
    return default if value in (None, "") else str(value)


def _line_down(d: dict[str, Any]) -> tuple[str, str]:
    line, minutes = _v(d, "line", _v(d, "entity_id")), _v(d, "minutes", _v(d, "_age_min", "?"))
    return (
        f"产线 {line} 停机 {minutes} 分钟",
        f"产线 {line} 已停机 {minutes} 分钟，原因：{_v(d, 'reason', '未说明')}",
    )


def _order_at_risk(d: dict[str, Any]) -> tuple[str, str]:
    order = _v(d, "order", _v(d, "entity_id"))
    return (
        f"订单 {order}（{_v(d, 'customer')}）有延期风险",
        f"订单 {order} 预计完成 {_v(d, 'eta')}，晚于承诺交期 {_v(d, 'promised')}。",
    )


def _crm_unreachable(d: dict[str, Any]) -> tuple[str, str]:
    return (
        "CRM 无法连接",
        f"CRM（{_v(d, 'url', _v(d, 'entity_id'))}）多次未接收更新，"
        f"{_v(d, 'dead_events', '?')} 条更新未送达。",
    )


def _line_unavailable(d: dict[str, Any]) -> tuple[str, str]:
    line = _v(d, "line", _v(d, "entity_id"))
    return f"产线 {line} 停止上报", f"产线 {line} 已有一段时间没有上报数据，请检查传感器与网络。"


def _promise_broken(d: dict[str, Any]) -> tuple[str, str]:
    order = _v(d, "order")
    if d.get("new"):
        old, new = _v(d, "old"), _v(d, "new")
        return (
            f"订单 {order}：承诺交期由 {old} 推迟到 {new}",
            f"计划已无法满足订单 {order} 原承诺交期 {old}，新的承诺交期为 {new}。",
        )
    date = _v(d, "promised_date")
    return (
        f"订单 {order}：承诺交期 {date} 已释放",
        f"订单 {_v(d, 'for_order')} 的变更已批准，订单 {order} 的承诺（{date}，"
        f"延误 {_v(d, 'slip_h', '?')} 小时）将在下次排产时重新承诺。",
    )


def _change_waiting(d: dict[str, Any]) -> tuple[str, str]:
    order = _v(d, "order")
    impact = d.get("impact_orders") or []
    return (
        f"订单 {order} 的变更待审批",
        f"订单 {order} 第 {_v(d, 'version', '?')} 版将影响 {len(impact)} 个已承诺订单："
        + "、".join(str(o) for o in impact[:10]),
    )


def _rush_accepted(d: dict[str, Any]) -> tuple[str, str]:
    order = _v(d, "order")
    return f"加急订单 {order} 已接受", f"加急订单 {order} 已排入生产计划。"


def _material_short(d: dict[str, Any]) -> tuple[str, str]:
    material = _v(d, "material")
    return (
        f"物料 {material} 短缺",
        f"计划在 {_v(d, 'needed_by')} 前还需 {_v(d, 'qty')} 的 {material}；"
        f"现在下单预计 {_v(d, 'arrives_if_ordered_now')} 到货。"
        f"等待的工单：{'、'.join(d.get('jobs') or []) or '—'}",
    )


_CHINESE: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "line_down": _line_down,
    "order_at_risk": _order_at_risk,
    "crm_unreachable": _crm_unreachable,
    "line_unavailable": _line_unavailable,
    "promise_broken": _promise_broken,
    "change_waiting": _change_waiting,
    "rush_accepted": _rush_accepted,
    "material_short": _material_short,
}


def text(event: Event, lang: str) -> tuple[str, str]:
    """The event's title and body in ``lang`` (English when there is no wording for it)."""
    title, body = event.title, event.body
    chinese = lang.lower().startswith("zh")
    if chinese:
        word = _CHINESE.get(event.alert_kind or event.kind)
        if word is not None:
            title, body = word({"_age_min": round(event.age_min), **event.details})
    if event.escalated is not None:
        level, minutes = event.escalated
        if chinese:
            title, body = f"已升级（第 {level} 级）：{title}", f"{minutes} 分钟无人确认。{body}"
        else:
            title = f"Escalated (level {level}): {title}"
            body = f"Not acknowledged after {minutes} min. {body}"
    return title, body
