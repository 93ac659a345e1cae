"""Customer tracking links (issue 11): a signed, expiring link per order, sent to the CRM
with the promise, opens a public, read-only, phone-first page with that order's status,
promise, ETA and milestones, nothing else. On real PostgreSQL and Redis, a local CRM, and
headless Chromium at 390 px."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest

from loopline.models.tracking import LinkExpired, TrackingLinks, tracking_key
from loopline.settings import new_webhook_secret
from loopline.simulators.crm import CrmFeedbackServer
from tests.factories import order_event
from tests.stack import start_stack, wait_until

ORDER = "SO-8801"
PUBLIC = "https://track.example.com"
# What the page must never show: the customer, the rep, the work orders, lines, risk words.
HIDDEN = ("Acme", "C-1", "zhang.wei", "WO-8801", "L1", "L2", "risk", "P1")


def test_links_are_signed_and_expire():
    links = TrackingLinks(tracking_key("s3cret"), base_url=PUBLIC)
    url = links.url_for(ORDER)
    assert url.startswith(f"{PUBLIC}/track/") and ORDER not in url.split("/track/")[1][:3]
    token = url.rsplit("/", 1)[1]
    assert links.order_of(token) == ORDER
    assert links.order_of(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert TrackingLinks(tracking_key("other"), base_url=PUBLIC).order_of(token) is None
    with pytest.raises(LinkExpired):
        TrackingLinks(tracking_key("s3cret"), max_age_s=-1).order_of(token)


@pytest.fixture
def tracked(postgres_url, redis_server):
    secret = new_webhook_secret()
    with CrmFeedbackServer(secret) as crm:
        stack = start_stack(
            database_url=postgres_url,
            redis_url=redis_server,
            mqtt_url=None,
            crm_url=crm.url,
            secret=secret,
            public_url=PUBLIC,
        )
        try:
            assert stack.send_crm(order_event(ORDER), "track-1").status_code == 202

            def link() -> str | None:
                for d in crm.received:
                    data = json.loads(d.body)["data"]
                    if data["order_id"] == ORDER and data.get("promised_date"):
                        return str(data["tracking_url"])
                return None

            url = wait_until(link, timeout=30)
            yield stack, url
        finally:
            stack.stop()


def test_the_crm_gets_a_link_that_opens_the_orders_page(tracked, browser, artifacts_dir):
    stack, url = tracked
    assert url.startswith(f"{PUBLIC}/track/")
    local = stack.url + urlsplit(url).path  # the public name, served here
    page = httpx.get(local, timeout=10)  # no token, no cookie: the link is enough
    assert page.status_code == 200, page.text
    assert ORDER in page.text and "Promised delivery" in page.text
    promised = stack.get(f"/api/v1/orders/{ORDER}").json()["promised_date"]
    assert promised[:4] in page.text and "Order received" in page.text
    leaked = [h for h in HIDDEN if h in page.text]
    assert not leaked, leaked
    assert page.headers["cache-control"] == "no-store"
    assert "noindex" in page.headers["x-robots-tag"]
    assert "script-src" not in page.headers["content-security-policy"]  # none may run
    assert "<script" not in page.text
    # Altered or foreign links find nothing; it is read-only.
    assert httpx.get(local[:-3] + "xyz", timeout=10).status_code == 404
    assert httpx.get(stack.url + "/track/nonsense", timeout=10).status_code == 404
    assert httpx.post(local, timeout=10).status_code in (404, 405)
    zh = httpx.get(local + "?lang=zh-CN", timeout=10)
    assert "承诺交期" in zh.text and "已收到订单" in zh.text

    for lang in ("en", "zh-CN"):
        context = browser.new_context(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            locale=lang,
        )
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
        tab.goto(local + f"?lang={lang}")
        tab.wait_for_selector(".status")
        width = tab.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"{lang}: the page scrolls sideways ({width} px)"
        # Each milestone label stays on one line at phone width (zh-CN wraps per character
        # when a column is squeezed).
        heights = tab.eval_on_selector_all("li span", "els => els.map(e => e.offsetHeight)")
        tab.screenshot(path=str(artifacts_dir / f"tracking-390-{lang}.png"), full_page=True)
        assert heights and max(heights) < 2 * min(heights), heights
        tab.screenshot(path=str(artifacts_dir / f"tracking-390-{lang}.png"), full_page=True)
        assert not errors, errors
        context.close()
