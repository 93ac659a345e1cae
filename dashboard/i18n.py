"""Every visible label of the screens in English and Simplified Chinese, plus locale formats.

``t(key, lang)`` looks a label up; ``{name}`` placeholders are filled from keyword
arguments. Times are shown in the site's time zone; dates and durations follow the
language's conventions (``1 Dec`` / ``12月1日``).
"""

from __future__ import annotations

import string
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from babel import Locale
from babel.dates import format_skeleton

from loopline.models.clock import parse_date, parse_time

LANGS = ("en", "zh-CN")
DEFAULT_LANG = "en"
NONE = "—"

MESSAGES: dict[str, dict[str, str]] = {
    "app.name": {"en": "Loopline", "zh-CN": "Loopline"},
    "nav.wall": {"en": "Wall", "zh-CN": "大屏"},
    "nav.board": {"en": "Board", "zh-CN": "进度看板"},
    "nav.orders": {"en": "Orders", "zh-CN": "订单查询"},
    "nav.alerts": {"en": "Alerts", "zh-CN": "告警"},
    "nav.plan": {"en": "Plan", "zh-CN": "计划"},
    "nav.lang_other": {"en": "中文", "zh-CN": "English"},
    "page.wall": {"en": "Wall screen", "zh-CN": "车间大屏"},
    "page.board": {"en": "Order progress", "zh-CN": "订单进度"},
    "page.orders": {"en": "Delivery lookup", "zh-CN": "交付查询"},
    "page.alerts": {"en": "Alerts", "zh-CN": "告警"},
    "page.plan": {"en": "Plan", "zh-CN": "计划"},
    # line states
    "state.running": {"en": "Running", "zh-CN": "运行中"},
    "state.idle": {"en": "Idle", "zh-CN": "空闲"},
    "state.down": {"en": "Down", "zh-CN": "停机"},
    "state.changeover": {"en": "Changeover", "zh-CN": "换型"},
    "state.unavailable": {"en": "No data", "zh-CN": "无数据"},
    # order risk
    "risk.on_track": {"en": "On track", "zh-CN": "正常"},
    "risk.at_risk": {"en": "At risk", "zh-CN": "有风险"},
    "risk.late": {"en": "Late", "zh-CN": "延期"},
    "risk.done": {"en": "Done", "zh-CN": "已完成"},
    # order status
    "status.open": {"en": "Open", "zh-CN": "待生产"},
    "status.in_progress": {"en": "In production", "zh-CN": "生产中"},
    "status.completed": {"en": "Completed", "zh-CN": "已完成"},
    "status.cancelled": {"en": "Cancelled", "zh-CN": "已取消"},
    # work-order status
    "wo.planned": {"en": "Planned", "zh-CN": "已计划"},
    "wo.running": {"en": "Running", "zh-CN": "生产中"},
    "wo.done": {"en": "Done", "zh-CN": "已完成"},
    # priority
    "priority.normal": {"en": "Normal", "zh-CN": "普通"},
    "priority.high": {"en": "High", "zh-CN": "高"},
    "priority.rush": {"en": "Rush", "zh-CN": "加急"},
    # alerts
    "severity.info": {"en": "Info", "zh-CN": "提示"},
    "severity.warning": {"en": "Warning", "zh-CN": "警告"},
    "severity.critical": {"en": "Critical", "zh-CN": "严重"},
    "alert.open": {"en": "Open", "zh-CN": "未确认"},
    "alert.acked": {"en": "Acknowledged", "zh-CN": "已确认"},
    "entity.line": {"en": "Line", "zh-CN": "产线"},
    "entity.order": {"en": "Order", "zh-CN": "订单"},
    "entity.work_order": {"en": "Work order", "zh-CN": "工单"},
    "entity.system": {"en": "System", "zh-CN": "系统"},
    "alerts.count": {"en": "{n} open", "zh-CN": "{n} 条未处理"},
    "alerts.empty": {"en": "No open alerts", "zh-CN": "暂无告警"},
    "alerts.ack": {"en": "Acknowledge", "zh-CN": "确认"},
    "alerts.opened": {"en": "open for {age}", "zh-CN": "已持续 {age}"},
    # wall
    "wall.rate": {"en": "Rate", "zh-CN": "速率"},
    "wall.per_hour": {"en": "/h", "zh-CN": "件/时"},
    "wall.of_nominal": {"en": "of {n}", "zh-CN": "标准 {n}"},
    "wall.eta": {"en": "ETA", "zh-CN": "预计完成"},
    "wall.no_wo": {"en": "No work order", "zh-CN": "无工单"},
    "wall.since": {"en": "since {time}", "zh-CN": "{time} 起"},
    "wall.next": {"en": "Next: {wo}", "zh-CN": "下一个：{wo}"},
    "wall.scrap": {"en": "scrap {n}", "zh-CN": "废品 {n}"},
    "wall.no_lines": {"en": "No lines reporting yet", "zh-CN": "暂无产线数据"},
    # any live screen while its store (or the server) cannot be reached
    "live.stale_since": {
        "en": "Live data stale since {time} — reconnecting…",
        "zh-CN": "实时数据自 {time} 起未更新，正在重新连接…",
    },
    "live.unavailable_since": {
        "en": "Live data unavailable since {time} — reconnecting…",
        "zh-CN": "实时数据自 {time} 起不可用，正在重新连接…",
    },
    # board and orders tables
    "col.order": {"en": "Order", "zh-CN": "订单"},
    "col.customer": {"en": "Customer", "zh-CN": "客户"},
    "col.priority": {"en": "Priority", "zh-CN": "优先级"},
    "col.requested": {"en": "Requested", "zh-CN": "要求交期"},
    "col.promised": {"en": "Promised", "zh-CN": "承诺交期"},
    "col.eta": {"en": "ETA", "zh-CN": "预计完成"},
    "col.progress": {"en": "Progress", "zh-CN": "进度"},
    "col.risk": {"en": "Risk", "zh-CN": "风险"},
    "col.status": {"en": "Status", "zh-CN": "状态"},
    "col.severity": {"en": "Severity", "zh-CN": "级别"},
    "col.message": {"en": "Message", "zh-CN": "内容"},
    "col.age": {"en": "Age", "zh-CN": "持续时间"},
    "col.entity": {"en": "Source", "zh-CN": "来源"},
    "board.orders": {"en": "Open orders", "zh-CN": "未完成订单"},
    "board.gantt": {"en": "Plan by line", "zh-CN": "各产线计划"},
    "board.empty": {"en": "No open orders", "zh-CN": "暂无未完成订单"},
    "board.count": {"en": "{n} orders", "zh-CN": "共 {n} 个订单"},
    "board.count.one": {"en": "1 order", "zh-CN": "共 1 个订单"},
    "orders.search": {"en": "Order id or customer", "zh-CN": "订单号或客户名称"},
    "orders.none": {"en": "No matching orders", "zh-CN": "没有匹配的订单"},
    "orders.count": {"en": "{n} orders", "zh-CN": "共 {n} 个订单"},
    "orders.count.one": {"en": "1 order", "zh-CN": "共 1 个订单"},
    "orders.more": {
        "en": "Showing the first {n}; refine the search to see others",
        "zh-CN": "仅显示前 {n} 个，请细化搜索条件",
    },
    # gantt
    "gantt.now": {"en": "now", "zh-CN": "现在"},
    "gantt.empty": {"en": "No planned work orders", "zh-CN": "暂无计划工单"},
    "gantt.wo": {"en": "Work order", "zh-CN": "工单"},
    "gantt.order": {"en": "Order", "zh-CN": "订单"},
    "gantt.sku": {"en": "Product", "zh-CN": "产品"},
    "gantt.qty": {"en": "Qty", "zh-CN": "数量"},
    "gantt.start": {"en": "Start", "zh-CN": "开始"},
    "gantt.end": {"en": "End", "zh-CN": "结束"},
    # plan: pending changes, purchase requests, the latest plan revision
    "plan.changes": {"en": "Changes waiting for approval", "zh-CN": "待审批的变更"},
    "plan.changes.count": {"en": "{n} pending", "zh-CN": "{n} 项待审批"},
    "plan.changes.empty": {
        "en": "No changes waiting: nothing breaks a promise",
        "zh-CN": "暂无待审批变更：没有承诺会被打破",
    },
    "plan.change.title": {"en": "Change #{id}", "zh-CN": "变更 #{id}"},
    "plan.change.version": {"en": "version {v}", "zh-CN": "第 {v} 版"},
    "plan.change.received": {
        "en": "received {when} from {source}",
        "zh-CN": "{when} 收到，来自 {source}",
    },
    "plan.change.by": {"en": "sales rep {who}", "zh-CN": "销售 {who}"},
    "plan.change.new_order": {"en": "New order", "zh-CN": "新订单"},
    "plan.change.cancel": {"en": "Cancel the order", "zh-CN": "取消订单"},
    "plan.change.unchanged": {
        "en": "Same content as the stored version",
        "zh-CN": "内容与已存版本相同",
    },
    "plan.field.lines": {"en": "Items", "zh-CN": "产品数量"},
    "plan.field.requested_date": {"en": "Requested", "zh-CN": "要求交期"},
    "plan.field.priority": {"en": "Priority", "zh-CN": "优先级"},
    "plan.field.customer": {"en": "Customer", "zh-CN": "客户"},
    "plan.impact": {
        "en": "Would break {n} promises; worst {h} h past the promised day",
        "zh-CN": "将打破 {n} 个承诺；最多超出承诺日 {h} 小时",
    },
    "plan.impact.one": {
        "en": "Would break 1 promise; {h} h past the promised day",
        "zh-CN": "将打破 1 个承诺；超出承诺日 {h} 小时",
    },
    "plan.col.planned_end": {"en": "Planned end", "zh-CN": "计划完成"},
    "plan.col.delay": {"en": "Moves", "zh-CN": "推迟"},
    "plan.col.slip": {"en": "Past promise", "zh-CN": "超出承诺"},
    "plan.approve": {"en": "Approve", "zh-CN": "批准"},
    "plan.reject": {"en": "Reject", "zh-CN": "拒绝"},
    "plan.decided": {"en": "Decided lately", "zh-CN": "最近的决定"},
    "plan.decided.by": {"en": "{status} by {who}, {when}", "zh-CN": "{who} {when} {status}"},
    "change.pending": {"en": "Pending", "zh-CN": "待审批"},
    "change.approved": {"en": "Approved", "zh-CN": "已批准"},
    "change.rejected": {"en": "Rejected", "zh-CN": "已拒绝"},
    "change.auto_approved": {"en": "Auto-approved", "zh-CN": "自动批准"},
    "change.superseded": {"en": "Superseded", "zh-CN": "已被取代"},
    "plan.result.ok": {
        "en": "Change #{id} for {order}: {status}",
        "zh-CN": "订单 {order} 的变更 #{id}：{status}",
    },
    "plan.result.forbidden": {
        "en": "Not allowed: {detail}",
        "zh-CN": "无权操作：{detail}",
    },
    "plan.result.signed_out": {
        "en": "Not signed in: open this page with ?token=<your token> once",
        "zh-CN": "未登录：请用 ?token=<您的令牌> 打开本页一次",
    },
    "plan.result.failed": {
        "en": "Change #{id} not decided ({status}): {detail}",
        "zh-CN": "变更 #{id} 未能处理（{status}）：{detail}",
    },
    "plan.result.unavailable": {
        "en": "Change #{id} not decided: the system is briefly unavailable, try again shortly",
        "zh-CN": "变更 #{id} 未能处理：系统暂时不可用，请稍后重试",
    },
    "plan.result.offline": {
        "en": "Change #{id}: the server did not answer ({detail})",
        "zh-CN": "变更 #{id}：服务器无响应（{detail}）",
    },
    "plan.requests": {"en": "Purchase requests", "zh-CN": "采购申请"},
    "plan.requests.count": {"en": "{n} open", "zh-CN": "{n} 项未处理"},
    "plan.requests.empty": {"en": "No material is short", "zh-CN": "没有缺料"},
    "plan.col.material": {"en": "Material", "zh-CN": "物料"},
    "plan.col.qty": {"en": "Quantity", "zh-CN": "数量"},
    "plan.col.needed_by": {"en": "Needed by", "zh-CN": "需用时间"},
    "plan.col.arrives": {"en": "Arrives if ordered now", "zh-CN": "立即下单到货"},
    "plan.col.waiting": {"en": "Waiting", "zh-CN": "等待的工单"},
    "plan.late_by": {"en": "{h} h late", "zh-CN": "晚 {h} 小时"},
    "plan.in_time": {"en": "in time", "zh-CN": "来得及"},
    "plan.revision": {"en": "Latest plan", "zh-CN": "最新计划"},
    "plan.revision.none": {"en": "No plan published yet", "zh-CN": "尚未发布计划"},
    "plan.revision.title": {"en": "Plan #{id}", "zh-CN": "计划 #{id}"},
    "plan.revision.meta": {
        "en": "{when} · {jobs} jobs · {solver} in {ms} ms · weighted tardiness {twt} h",
        "zh-CN": "{when} · {jobs} 个工单 · {solver} 用时 {ms} 毫秒 · 加权延期 {twt} 小时",
    },
    "plan.trigger": {"en": "Trigger", "zh-CN": "触发原因"},
    "plan.moved": {"en": "Moved", "zh-CN": "调整的工单"},
    "plan.moved.none": {"en": "Nothing moved", "zh-CN": "没有工单调整"},
    "plan.added": {"en": "Added", "zh-CN": "新增"},
    "plan.removed": {"en": "Removed", "zh-CN": "移除"},
    "plan.none": {"en": "none", "zh-CN": "无"},
    "plan.late": {"en": "Late", "zh-CN": "延期"},
    "plan.at_risk": {"en": "At risk", "zh-CN": "有风险"},
    "plan.late.none": {"en": "No late or at-risk work", "zh-CN": "没有延期或有风险的工单"},
    "plan.col.job": {"en": "Work order", "zh-CN": "工单"},
    "plan.col.line": {"en": "Line", "zh-CN": "产线"},
    "plan.col.start_shift": {"en": "Start", "zh-CN": "开始"},
    "plan.col.end_shift": {"en": "End", "zh-CN": "结束"},
    "plan.col.hours": {"en": "Late / slack", "zh-CN": "延期 / 余量"},
    "plan.col.reason": {"en": "Why", "zh-CN": "原因"},
    "plan.hours_late": {"en": "{h} h late", "zh-CN": "延期 {h} 小时"},
    "plan.hours_slack": {"en": "{h} h to spare", "zh-CN": "余量 {h} 小时"},
    "plan.more": {"en": "and {n} more", "zh-CN": "另有 {n} 项"},
    "plan.no_db": {
        "en": "This screen has no database: pending changes, purchases and plans are not shown",
        "zh-CN": "本屏幕未连接数据库：无法显示待审批变更、采购申请和计划",
    },
    "plan_cause.material": {
        "en": "waits for material {material} until {until}",
        "zh-CN": "等待物料 {material}，到 {until}",
    },
    "plan_cause.rush": {
        "en": "rush order {order} took its place on line {line}",
        "zh-CN": "加急订单 {order} 占用了产线 {line}",
    },
    "plan_cause.line_down": {
        "en": "line {line} down until {until}",
        "zh-CN": "产线 {line} 停机至 {until}",
    },
    "plan_cause.lead_time": {
        "en": "lead time: cannot finish by due even on an idle line",
        "zh-CN": "交期过短：即使产线空闲也无法按期完成",
    },
    "plan_cause.capacity": {"en": "capacity on line {line}", "zh-CN": "产线 {line} 产能不足"},
    "plan_cause.short": {"en": "short, a purchase is requested", "zh-CN": "缺料，已提出采购申请"},
    # durations and relative days
    "time.just_now": {"en": "just now", "zh-CN": "刚刚"},
    "time.min": {"en": "{n} min", "zh-CN": "{n} 分钟"},
    "time.h_min": {"en": "{h} h {m} min", "zh-CN": "{h} 小时 {m} 分钟"},
    "time.d_h": {"en": "{d} d {h} h", "zh-CN": "{d} 天 {h} 小时"},
    "time.tomorrow": {"en": "tomorrow", "zh-CN": "明天"},
    "time.yesterday": {"en": "yesterday", "zh-CN": "昨天"},
    # alert texts and delivery-risk causes, worded from their structured details
    "alert_text.line_down": {
        "en": "Line {line} down for {minutes} min: {reason}",
        "zh-CN": "产线 {line} 已停机 {minutes} 分钟：{reason}",
    },
    "alert_text.line_unavailable": {
        "en": "Line {line} stopped reporting",
        "zh-CN": "产线 {line} 已停止上报数据",
    },
    "alert_text.order_at_risk": {
        "en": "Order {order} ({customer}) at risk: ETA {eta} after promise {promised}: {cause}",
        "zh-CN": "订单 {order}（{customer}）有延期风险："
        "预计 {eta} 完成，晚于承诺的 {promised}：{cause}",
    },
    "alert_text.mqtt_gap": {
        "en": "Line {line}: messages {expected}–{last} never arrived",
        "zh-CN": "产线 {line}：第 {expected}–{last} 条消息未到达",
    },
    "alert_text.sparkplug_gap": {
        "en": "Sparkplug node {node}: seq {got} where {expected} was due; rebirth requested",
        "zh-CN": "Sparkplug 节点 {node}：应为序号 {expected}，收到 {got}；已请求重发出生证书",
    },
    "alert_text.sparkplug_disconnected": {
        "en": "Sparkplug feed disconnected from the broker: {reason}",
        "zh-CN": "Sparkplug 数据与消息服务器断开：{reason}",
    },
    "alert_text.mqtt_disconnected": {
        "en": "Shop-floor feed disconnected from the broker: {reason}",
        "zh-CN": "车间数据与消息服务器断开：{reason}",
    },
    "alert_text.crm_unreachable": {
        "en": "The CRM at {url} does not accept updates: {dead_events} undelivered",
        "zh-CN": "CRM（{url}）无法接收更新：{dead_events} 条未送达",
    },
    "cause.line_down": {
        "en": "line {line} is down ({reason})",
        "zh-CN": "产线 {line} 停机（{reason}）",
    },
    "cause.line_silent": {"en": "line {line} stopped reporting", "zh-CN": "产线 {line} 无数据上报"},
    "cause.line_slow": {
        "en": "line {line} runs at {observed}/h, plan {planned}/h",
        "zh-CN": "产线 {line} 实际 {observed}/小时，计划 {planned}/小时",
    },
    "cause.capacity": {"en": "capacity on line {line}", "zh-CN": "产线 {line} 产能不足"},
    "risk_text": {
        "en": "ETA {eta} after promise {promised}: {cause}",
        "zh-CN": "预计 {eta} 完成，晚于承诺的 {promised}：{cause}",
    },
    # -- /kpi, the follow-up inbox and the order detail ---------------------------------
    "nav.kpi": {"en": "KPIs", "zh-CN": "指标"},
    "nav.inbox": {"en": "Inbox", "zh-CN": "待办"},
    "page.kpi": {"en": "Key figures", "zh-CN": "关键指标"},
    "page.inbox": {"en": "Follow-up inbox", "zh-CN": "跟进待办"},
    "status.delivered": {"en": "Delivered", "zh-CN": "已交付"},
    "kpi.period": {"en": "Period", "zh-CN": "统计周期"},
    "kpi.weeks": {"en": "{n} weeks", "zh-CN": "{n} 周"},
    "kpi.range": {"en": "{start} – {end}, by week", "zh-CN": "{start} 至 {end}，按周"},
    "kpi.on_time_delivery": {"en": "On-time delivery", "zh-CN": "准时交付率"},
    "kpi.on_time_delivery.help": {
        "en": "delivered by the requested day",
        "zh-CN": "在客户要求日期前交付",
    },
    "kpi.lead_time_avg": {"en": "Lead time, average", "zh-CN": "平均交付周期"},
    "kpi.lead_time_avg.help": {"en": "order to delivery", "zh-CN": "从下单到交付"},
    "kpi.lead_time_p90": {"en": "Lead time, p90", "zh-CN": "交付周期 P90"},
    "kpi.lead_time_p90.help": {
        "en": "9 in 10 orders are delivered within",
        "zh-CN": "九成订单在此天数内交付",
    },
    "kpi.promise_reliability": {"en": "Promise reliability", "zh-CN": "承诺达成率"},
    "kpi.promise_reliability.help": {
        "en": "delivered by the promised day",
        "zh-CN": "在承诺日期前交付",
    },
    "kpi.promise_slip": {"en": "Delivered vs promised", "zh-CN": "实际与承诺偏差"},
    "kpi.promise_slip.help": {
        "en": "average days after the promise (minus: early)",
        "zh-CN": "平均晚于承诺的天数（负数为提前）",
    },
    "kpi.inventory_turns": {"en": "Inventory turns", "zh-CN": "库存周转次数"},
    "kpi.inventory_turns.help": {
        "en": "per year, materials used over average stock",
        "zh-CN": "年化，物料消耗 / 平均库存",
    },
    "kpi.satisfaction": {"en": "Customer satisfaction", "zh-CN": "客户满意度"},
    "kpi.satisfaction.help": {"en": "follow-up score, 0–100", "zh-CN": "回访评分，0–100"},
    "kpi.open_alerts": {"en": "Open alerts", "zh-CN": "未关闭告警"},
    "kpi.open_alerts.help": {
        "en": "trend: open at each week's end",
        "zh-CN": "趋势：每周末未关闭数",
    },
    "kpi.count": {"en": "{n} measured", "zh-CN": "样本 {n}"},
    "kpi.none": {"en": "nothing to measure yet", "zh-CN": "暂无数据"},
    "kpi.unit.days": {"en": "days", "zh-CN": "天"},
    "kpi.unit.turns": {"en": "×/yr", "zh-CN": "次/年"},
    "kpi.unit.score": {"en": "/ 100", "zh-CN": "分（满分 100）"},
    "kpi.unit.alerts": {"en": "open", "zh-CN": "条"},
    "kpi.oee": {"en": "OEE per line", "zh-CN": "各产线 OEE"},
    "kpi.availability_title": {"en": "Availability per line", "zh-CN": "各产线可用率"},
    "kpi.oee.pending": {
        "en": "OEE needs performance, which is not measured yet: availability is shown",
        "zh-CN": "OEE 需要性能开动率，目前尚未测量：此处显示可用率",
    },
    "kpi.col.line": {"en": "Line", "zh-CN": "产线"},
    "kpi.col.availability": {"en": "Availability", "zh-CN": "可用率"},
    "kpi.col.performance": {"en": "Performance", "zh-CN": "性能"},
    "kpi.col.quality": {"en": "Quality", "zh-CN": "良品率"},
    "kpi.col.oee": {"en": "OEE", "zh-CN": "综合效率"},
    "kpi.alerts_by_age": {"en": "Open alerts by age", "zh-CN": "未关闭告警（按时长）"},
    "kpi.age.lt_1h": {"en": "< 1 h", "zh-CN": "< 1 小时"},
    "kpi.age.1h_8h": {"en": "1–8 h", "zh-CN": "1–8 小时"},
    "kpi.age.8h_24h": {"en": "8–24 h", "zh-CN": "8–24 小时"},
    "kpi.age.1d_7d": {"en": "1–7 days", "zh-CN": "1–7 天"},
    "kpi.age.gt_7d": {"en": "> 7 days", "zh-CN": "> 7 天"},
    "kpi.age.critical": {"en": "critical", "zh-CN": "严重"},
    "kpi.age.other": {"en": "other", "zh-CN": "其他"},
    "kpi.no_db": {"en": "No database behind this screen", "zh-CN": "此页面未连接数据库"},
    "kpi.week": {"en": "week of {day}", "zh-CN": "{day} 当周"},
    # order detail (/orders/<id>)
    "detail.back": {"en": "← All orders", "zh-CN": "← 全部订单"},
    "detail.none": {"en": "No order {id}", "zh-CN": "没有订单 {id}"},
    "detail.work_orders": {"en": "Work orders", "zh-CN": "工单"},
    "detail.promises": {"en": "Promise history", "zh-CN": "承诺记录"},
    "detail.promises.none": {"en": "No promise yet", "zh-CN": "尚未承诺交期"},
    "detail.timeline": {"en": "Timeline", "zh-CN": "时间线"},
    "detail.timeline.none": {"en": "Nothing recorded yet", "zh-CN": "暂无记录"},
    "detail.followups": {"en": "Follow-up", "zh-CN": "交付跟进"},
    "detail.risk": {"en": "Risk", "zh-CN": "风险"},
    "detail.made": {"en": "{good} of {qty} made", "zh-CN": "已完成 {good} / {qty}"},
    "detail.scrap": {"en": "{n} scrap", "zh-CN": "报废 {n}"},
    "detail.planned": {"en": "planned {start} – {end}", "zh-CN": "计划 {start} – {end}"},
    "detail.promise": {"en": "promised {day}", "zh-CN": "承诺 {day}"},
    "detail.promise.moved": {"en": "{old} → {new}", "zh-CN": "由 {old} 改为 {new}"},
    "detail.by": {"en": "by {who}", "zh-CN": "操作人 {who}"},
    "promise_rule.requested": {
        "en": "requested date met with {h} h margin",
        "zh-CN": "按要求交期承诺（余量 {h} 小时）",
    },
    "promise_rule.earliest": {"en": "earliest safe date", "zh-CN": "最早可保证日期"},
    "promise_rule.earliest_missed": {
        "en": "earliest safe date (requested date not met with margin)",
        "zh-CN": "最早可保证日期（无法按要求交期留足余量）",
    },
    "detail.no_db": {
        "en": "History is not available on this screen",
        "zh-CN": "此页面无法显示历史记录",
    },
    "orders.open_detail": {"en": "Details", "zh-CN": "详情"},
    "action.order.created": {"en": "Order received", "zh-CN": "收到订单"},
    "action.order.changed": {"en": "Order changed", "zh-CN": "订单变更"},
    "action.order.cancelled": {"en": "Order cancelled", "zh-CN": "订单取消"},
    "action.order.promised": {"en": "Delivery date promised", "zh-CN": "承诺交期"},
    "action.order.promise_released": {"en": "Promise released", "zh-CN": "承诺解除"},
    "action.order.in_progress": {"en": "Production started", "zh-CN": "开始生产"},
    "action.order.completed": {"en": "Production completed", "zh-CN": "生产完成"},
    "action.order.delivered": {"en": "Delivered", "zh-CN": "已交付"},
    "action.order.stale_ignored": {
        "en": "Outdated CRM update ignored",
        "zh-CN": "忽略过期的 CRM 更新",
    },
    "action.followup.delivery_confirmation.done": {
        "en": "Delivery confirmed",
        "zh-CN": "确认交付",
    },
    "action.followup.satisfaction.done": {"en": "Satisfaction recorded", "zh-CN": "记录满意度"},
    "task.delivery_confirmation": {"en": "Confirm delivery", "zh-CN": "确认交付"},
    "task.satisfaction": {"en": "Satisfaction follow-up", "zh-CN": "满意度回访"},
    "task.open": {"en": "Open", "zh-CN": "待办"},
    "task.done": {"en": "Done", "zh-CN": "已完成"},
    "task.score": {"en": "score {score}", "zh-CN": "评分 {score}"},
    "inbox.rep": {"en": "Sales rep", "zh-CN": "销售代表"},
    "inbox.rep.all": {"en": "everyone (type a rep's name)", "zh-CN": "全部（输入销售代表）"},
    "inbox.count": {"en": "{n} open tasks", "zh-CN": "共 {n} 项待办"},
    "inbox.count.one": {"en": "1 open task", "zh-CN": "共 1 项待办"},
    "inbox.empty": {"en": "Nothing to follow up", "zh-CN": "没有待跟进事项"},
    "inbox.delivered": {"en": "delivered {when}", "zh-CN": "{when} 交付"},
    "inbox.due": {"en": "due {when}", "zh-CN": "{when} 到期"},
    "inbox.for": {"en": "for {who}", "zh-CN": "负责人 {who}"},
    "inbox.score": {"en": "Satisfaction (0–100)", "zh-CN": "满意度（0–100）"},
    "inbox.note": {"en": "Note", "zh-CN": "备注"},
    "inbox.confirm": {"en": "Confirm delivery", "zh-CN": "确认交付"},
    "inbox.save": {"en": "Save follow-up", "zh-CN": "提交回访"},
    "inbox.result.ok": {"en": "Task {id} done ({order})", "zh-CN": "任务 {id} 已完成（{order}）"},
    "inbox.result.failed": {
        "en": "Task {id} not saved ({status}): {detail}",
        "zh-CN": "任务 {id} 未保存（{status}）：{detail}",
    },
    # /inbox: the signed-in person's notifications
    "inbox.notes": {"en": "Notifications", "zh-CN": "通知"},
    "inbox.notes.count": {"en": "{n} unread", "zh-CN": "{n} 条未读"},
    "inbox.notes.count.one": {"en": "1 unread", "zh-CN": "1 条未读"},
    "inbox.notes.empty": {"en": "No notifications", "zh-CN": "暂无通知"},
    "inbox.notes.everyone": {
        "en": "Every person's inbox (admin)",
        "zh-CN": "所有人的通知（管理员）",
    },
    "inbox.notes.read": {"en": "Mark read", "zh-CN": "标为已读"},
    "inbox.notes.read_all": {"en": "Mark all read", "zh-CN": "全部标为已读"},
    "inbox.notes.ack": {"en": "Acknowledge", "zh-CN": "确认告警"},
    "inbox.notes.unread": {"en": "Unread", "zh-CN": "未读"},
    "inbox.notes.to": {"en": "to {who}", "zh-CN": "发给 {who}"},
    "inbox.notes.order": {"en": "Order {order}", "zh-CN": "订单 {order}"},
    "inbox.alert.open": {"en": "Alert open", "zh-CN": "告警未确认"},
    "inbox.alert.acked": {"en": "Alert acknowledged", "zh-CN": "告警已确认"},
    "inbox.alert.resolved": {"en": "Alert resolved", "zh-CN": "告警已解除"},
    "inbox.alert.level": {"en": "escalation level {level}", "zh-CN": "升级第 {level} 级"},
    "inbox.notes.ok.read": {"en": "Marked read ({n})", "zh-CN": "已标为已读（{n} 条）"},
    "inbox.notes.ok.ack": {
        "en": "Alert {alert} acknowledged: its escalation stops",
        "zh-CN": "告警 {alert} 已确认，停止升级",
    },
    "inbox.notes.failed": {
        "en": "Not done ({status}): {detail}",
        "zh-CN": "未完成（{status}）：{detail}",
    },
    # OEE and downtime (the wall tile, /andon)
    "nav.andon": {"en": "Andon", "zh-CN": "安灯"},
    "page.andon": {"en": "Stops waiting for a reason", "zh-CN": "待填写原因的停机"},
    "wall.oee": {"en": "OEE", "zh-CN": "综合效率"},
    "andon.count": {"en": "{n} waiting", "zh-CN": "{n} 条待填写"},
    "andon.empty": {"en": "Every stop has a reason", "zh-CN": "所有停机均已填写原因"},
    "andon.pick": {"en": "Pick a reason", "zh-CN": "选择原因"},
    "andon.assign": {"en": "Assign", "zh-CN": "确认"},
    "andon.sensor": {"en": "line said: {reason}", "zh-CN": "设备上报：{reason}"},
    "andon.when": {
        "en": "{state} {start}–{end} · {duration}",
        "zh-CN": "{state}：{start} 至 {end}，共 {duration}",
    },
    "andon.open": {"en": "now", "zh-CN": "至今"},
    "andon.assigned": {"en": "Line {line}: {reason}", "zh-CN": "产线 {line}：{reason}"},
    "andon.refused": {
        "en": "Not assigned ({status}): {detail}",
        "zh-CN": "未能填写（{status}）：{detail}",
    },
    "andon.pick_first": {"en": "Pick a reason first", "zh-CN": "请先选择原因"},
    "andon.pareto": {"en": "Downtime by reason, week {week}", "zh-CN": "第 {week} 周停机原因"},
    "andon.pareto_empty": {"en": "No downtime this week", "zh-CN": "本周无停机"},
    "andon.minutes": {"en": "min", "zh-CN": "分钟"},
    "andon.cumulative": {"en": "cumulative", "zh-CN": "累计"},
    "loss.breakdown": {"en": "Breakdown", "zh-CN": "设备故障"},
    "loss.setup": {"en": "Setup", "zh-CN": "换型调整"},
    "loss.small_stop": {"en": "Small stop", "zh-CN": "短暂停机"},
    "loss.slow_cycle": {"en": "Slow cycle", "zh-CN": "速度损失"},
    "loss.startup_reject": {"en": "Startup reject", "zh-CN": "开机废品"},
    "loss.production_reject": {"en": "Production reject", "zh-CN": "生产废品"},
    "loss.unexplained": {"en": "Unexplained", "zh-CN": "原因未明"},
}

# Month and weekday names, date patterns and plural rules come from CLDR through Babel.
# English reads day-month ("1 Dec", as factories outside the US write it): en_GB.
_LOCALES = {"en": Locale.parse("en_GB"), "zh-CN": Locale.parse("zh_Hans_CN")}


def locale_of(lang: str) -> Locale:
    """The CLDR locale a supported language formats with."""
    return _LOCALES.get(lang, _LOCALES[DEFAULT_LANG])


def normalize_lang(lang: str | None, default: str = DEFAULT_LANG) -> str:
    """The supported language closest to ``lang`` (``zh``, ``zh_cn`` → ``zh-CN``)."""
    if not lang:
        return default if default in LANGS else DEFAULT_LANG
    low = lang.strip().lower().replace("_", "-")
    if low.startswith("zh"):
        return "zh-CN"
    if low.startswith("en"):
        return "en"
    return default if default in LANGS else DEFAULT_LANG


def t(key: str, lang: str, **values: Any) -> str:
    """The label ``key`` in ``lang``; an unknown key shows as itself so gaps are visible."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry[DEFAULT_LANG]
    return text.format(**values) if values else text


def t_count(key: str, lang: str, n: int) -> str:
    """A label with a count in the plural form ``lang``'s rules choose for ``n`` (CLDR:
    ``<key>.one``, ``<key>.few``... where the messages have it, else ``<key>``)."""
    form = locale_of(lang).plural_form(n)
    if f"{key}.{form}" in MESSAGES:
        return t(f"{key}.{form}", lang, n=n)
    return t(key, lang, n=n)


def label(prefix: str, value: str | None, lang: str) -> str:
    """The label of an enumerated value (``label("state", "down", "en") == "Down"``)."""
    if not value:
        return NONE
    key = f"{prefix}.{value}"
    return t(key, lang) if key in MESSAGES else value


# -- formats -----------------------------------------------------------------------
def fmt_int(n: float | int | None) -> str:
    """A count with thousands separators."""
    if n is None:
        return NONE
    return f"{round(n):,}"


def fmt_day(day: date, lang: str, *, today: date | None = None) -> str:
    """A calendar day: ``1 Dec`` / ``12月1日``, with the year when it is not this year."""
    same_year = today is not None and today.year == day.year
    return format_skeleton("MMMd" if same_year else "yMMMd", day, locale=locale_of(lang))


def fmt_date(value: str | None, lang: str, *, today: date | None = None) -> str:
    """A ``YYYY-MM-DD`` field for a table cell."""
    day = parse_date(value)
    return fmt_day(day, lang, today=today) if day else NONE


def fmt_clock(moment: datetime, tz: tzinfo | None) -> str:
    """``HH:MM`` in the site's time zone."""
    return moment.astimezone(tz).strftime("%H:%M")


def fmt_today(moment: datetime, lang: str, tz: tzinfo | None) -> str:
    """The wall header's date: ``Sat 28 Nov`` / ``11月28日周六``."""
    return format_skeleton("MMMEd", moment.astimezone(tz).date(), locale=locale_of(lang))


def fmt_eta(value: str | None, lang: str, *, tz: tzinfo | None, now: datetime) -> str:
    """A moment as ``HH:MM`` when it is today, else with its day (``tomorrow 06:10``)."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    local = moment.astimezone(tz)
    today = now.astimezone(tz).date()
    clock = local.strftime("%H:%M")
    day = local.date()
    if day == today:
        return clock
    if day == today + timedelta(days=1):
        return f"{t('time.tomorrow', lang)} {clock}"
    if day == today - timedelta(days=1):
        return f"{t('time.yesterday', lang)} {clock}"
    return f"{fmt_day(day, lang, today=today)} {clock}"


def fmt_duration(seconds: float, lang: str) -> str:
    """A span as people say it: ``just now``, ``25 min``, ``2 h 5 min``, ``3 d 4 h``."""
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return t("time.just_now", lang)
    if minutes < 60:
        return t("time.min", lang, n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return t("time.h_min", lang, h=hours, m=minutes)
    days, hours = divmod(hours, 24)
    return t("time.d_h", lang, d=days, h=hours)


def fmt_age(value: str | None, lang: str, *, now: datetime) -> str:
    """How long ago a moment was; ``—`` when unknown."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    return fmt_duration((now - moment).total_seconds(), lang)


def fmt_pct(fraction: float | None) -> str:
    """A 0–1 fraction as a whole percentage."""
    if fraction is None:
        return NONE
    return f"{round(max(0.0, min(1.0, float(fraction))) * 100)} %"


def cause_text(cause: dict[str, Any] | None, lang: str) -> str | None:
    """Why an order runs late, in ``lang``; None when the cause is unknown or malformed."""
    key = f"cause.{(cause or {}).get('code')}"
    if not cause or key not in MESSAGES or not _fields(MESSAGES[key][DEFAULT_LANG]) <= cause.keys():
        return None
    try:
        return t(f"cause.{cause['code']}", lang, **{k: v for k, v in cause.items() if k != "code"})
    except (KeyError, IndexError):
        return None


def risk_text(order: dict[str, Any], lang: str) -> str:
    """An order's delivery-risk reason in ``lang`` (the stored English text as a fallback)."""
    cause = cause_text(order.get("risk_cause"), lang)
    fallback = str(order.get("risk_reason") or "")
    if cause is None or not order.get("eta") or not order.get("promised_date"):
        return fallback
    eta = parse_time(order["eta"])
    return t(
        "risk_text",
        lang,
        eta=f"{eta:%Y-%m-%d %H:%M}" if eta else order["eta"],
        promised=order["promised_date"],
        cause=cause,
    )


def alert_text(alert: dict[str, Any], lang: str) -> str:
    """An alert's message in ``lang``, worded from its details (its stored text otherwise)."""
    fallback = str(alert.get("message") or alert.get("kind") or "")
    key = f"alert_text.{alert.get('kind')}"
    details = dict(alert.get("details") or {})
    if key not in MESSAGES or not _fields(MESSAGES[key][DEFAULT_LANG]) <= details.keys():
        return fallback  # an older alert, or another kind: its stored text is all there is
    if "cause" in details:
        details["cause"] = cause_text(details["cause"], lang)
        if details["cause"] is None:
            return fallback
    if details.get("eta"):
        eta = parse_time(details["eta"])
        details["eta"] = f"{eta:%Y-%m-%d %H:%M}" if eta else details["eta"]
    try:
        return t(key, lang, **details)
    except (KeyError, IndexError):
        return fallback


def _fields(template: str) -> set[str]:
    """The placeholders a message template needs."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
