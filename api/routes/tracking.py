"""The customer tracking page, ``/track/{token}``: public, read-only, phone-first.

The signed link is the only credential. The page shows one order's status, promise, ETA,
progress and milestones, nothing else; it runs no script, is never cached, and asks
search engines not to index it. A link that is not ours answers 404, an old one 410.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from loopline.api.pages import PAGE_CSP
from loopline.models.tracking import (
    LinkExpired,
    TrackingLinks,
    promised_on_time,
    tracking_view,
)

router = APIRouter(include_in_schema=False)
TOKEN_CHARS = 400

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "Your order", "zh-CN": "您的订单"},
    "status.open": {"en": "Scheduled", "zh-CN": "已排产"},
    "status.in_progress": {"en": "In production", "zh-CN": "生产中"},
    "status.completed": {"en": "Produced", "zh-CN": "已完工"},
    "status.delivered": {"en": "Delivered", "zh-CN": "已交付"},
    "status.cancelled": {"en": "Cancelled", "zh-CN": "已取消"},
    "promised": {"en": "Promised delivery", "zh-CN": "承诺交期"},
    "eta": {"en": "Expected ready", "zh-CN": "预计完工"},
    "progress": {"en": "Progress", "zh-CN": "进度"},
    "milestones": {"en": "Milestones", "zh-CN": "进展"},
    "pending": {"en": "not yet set", "zh-CN": "尚未确定"},
    "on_time": {"en": "on time", "zh-CN": "按期"},
    "late": {"en": "later than promised", "zh-CN": "晚于承诺"},
    "m.received": {"en": "Order received", "zh-CN": "已收到订单"},
    "m.promised": {"en": "Promised for {date}", "zh-CN": "承诺交期：{date}"},
    "m.started": {"en": "Production started", "zh-CN": "开始生产"},
    "m.completed": {"en": "Production finished", "zh-CN": "生产完成"},
    "m.delivered": {"en": "Delivered", "zh-CN": "已交付"},
    "m.cancelled": {"en": "Cancelled", "zh-CN": "已取消"},
    "gone": {
        "en": "This tracking link has expired. Ask us for a new one.",
        "zh-CN": "此跟踪链接已过期，请联系我们获取新链接。",
    },
    "unknown": {"en": "This tracking link is not valid.", "zh-CN": "此跟踪链接无效。"},
}

STYLE = """
*{box-sizing:border-box}body{margin:0;font-family:system-ui,-apple-system,"PingFang SC",
"Microsoft YaHei",sans-serif;background:#f4f5f7;color:#1d2430;font-size:17px;line-height:1.4}
main{max-width:34rem;margin:0 auto;padding:1rem}header{padding:.5rem 0 1rem}
.brand{color:#5b6472;font-size:.85rem}h1{font-size:1.4rem;margin:.2rem 0}
.order{font-variant-numeric:tabular-nums;color:#5b6472}
.card{background:#fff;border-radius:12px;padding:1rem;margin:0 0 .8rem;
box-shadow:0 1px 3px rgba(0,0,0,.1)}.status{font-size:1.5rem;font-weight:650}
.status--completed,.status--delivered{color:#1a7f37}.status--cancelled{color:#8c959f}
.status--in_progress{color:#0b5cad}dl{margin:0;display:grid;grid-template-columns:1fr auto;
gap:.6rem 1rem}dt{color:#5b6472}dd{margin:0;font-weight:600;text-align:right}
.bar{height:.6rem;border-radius:.3rem;background:#e3e6eb;overflow:hidden;margin-top:.5rem}
.bar span{display:block;height:100%;background:#1f6feb}.tag{font-size:.8rem;font-weight:500;
display:block}.tag--late{color:#b42318}.tag--on_time{color:#1a7f37}
ol{list-style:none;margin:0;padding:0}li{padding:.55rem 0 .55rem 1.1rem;position:relative;
border-top:1px solid #eef0f3}li:first-child{border-top:0}
.heading{font-size:1rem;margin:0 0 .3rem;color:#5b6472}
li::before{content:"";position:absolute;
left:0;top:1.05rem;width:.5rem;height:.5rem;border-radius:50%;background:#1f6feb}
li span{display:block}li time{display:block;color:#5b6472;font-size:.85rem}
.notice{margin-top:20vh;text-align:center}
"""


def _lang(request: Request) -> str:
    asked = request.query_params.get("lang") or request.headers.get("accept-language", "")
    return "zh-CN" if asked.lower().startswith("zh") else "en"


def _t(key: str, lang: str, **kw: str) -> str:
    return TEXT[key][lang].format(**kw)


def _day(value: str | None, lang: str) -> str:
    if not value:
        return _t("pending", lang)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return f"{moment:%Y-%m-%d}" if lang == "zh-CN" else f"{moment:%d %b %Y}"


def _page(title: str, body: str, lang: str, status_code: int = 200) -> HTMLResponse:
    html = f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><link rel="icon" href="data:,">
<title>{escape(title)}</title>
<style>{STYLE}</style></head><body><main>{body}</main></body></html>"""
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "Cache-Control": "no-store",
            "X-Robots-Tag": "noindex, nofollow",
        },
    )


def render(view: dict[str, Any], lang: str) -> str:
    """The page body for one order's tracking view."""
    status = str(view["status"])
    status_text = TEXT.get(f"status.{status}", {}).get(lang, status)
    timing = promised_on_time(view)
    tag = ""
    if timing is not None and status not in ("completed", "delivered", "cancelled"):
        kind = "on_time" if timing else "late"
        tag = f'<span class="tag tag--{kind}">{_t(kind, lang)}</span>'
    pct = round(100 * float(view["progress"]))
    steps = []
    for m in view["milestones"]:
        label = _t(f"m.{m['kind']}", lang, date=_day(m.get("date"), lang))
        steps.append(
            f'<li><span>{escape(label)}</span><time datetime="{escape(str(m["at"]))}">'
            f"{escape(_day(m['at'], lang))}</time></li>"
        )
    eta_row = (
        f"<dt>{_t('eta', lang)}</dt><dd>{escape(_day(view['eta'], lang))}{tag}</dd>"
        if view.get("eta")
        else ""
    )
    return f"""<header><div class="brand">Loopline</div><h1>{_t("title", lang)}</h1>
<div class="order">{escape(str(view["order_id"]))}</div></header>
<section class="card"><div class="status status--{escape(status)}">{escape(status_text)}</div>
<div class="bar" role="progressbar" aria-valuenow="{pct}" aria-valuemin="0" aria-valuemax="100">
<span style="width:{pct}%"></span></div></section>
<section class="card"><dl><dt>{_t("promised", lang)}</dt>
<dd>{escape(_day(view["promised_date"], lang))}</dd>{eta_row}
<dt>{_t("progress", lang)}</dt><dd>{pct}%</dd></dl></section>
<section class="card"><h2 class="heading">{_t("milestones", lang)}</h2><ol>{"".join(steps)}</ol>
</section>"""


@router.get("/track/{token}")
def track(request: Request, token: Annotated[str, Path(max_length=TOKEN_CHARS)]) -> HTMLResponse:
    lang = _lang(request)
    ctx = request.app.state.context
    links: TrackingLinks | None = ctx.tracking
    try:
        order_id = links.order_of(token) if links is not None else None
    except LinkExpired:
        return _page("Loopline", f'<p class="notice">{_t("gone", lang)}</p>', lang, 410)
    view = None
    if order_id is not None:
        with ctx.sessions() as session:
            view = tracking_view(session, ctx.live, order_id=order_id)
    if view is None:
        return _page("Loopline", f'<p class="notice">{_t("unknown", lang)}</p>', lang, 404)
    return _page(f"{_t('title', lang)} {view['order_id']}", render(view, lang), lang)
