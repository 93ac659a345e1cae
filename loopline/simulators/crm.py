"""A CRM played locally: it sends order events to Loopline and receives Loopline's feedback.

``CrmSimulator`` is the demo's CRM (the source of truth for orders); ``CrmFeedbackServer``
is a real HTTP server that accepts the outbox's Standard-Webhooks-signed POSTs, for the demo
and for tests (STYLE.md 15: a fake only for what is truly outside).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger("loopline.simulators.crm")

EVENTS_PATH = "/api/v1/crm/events"
MIN_EVENT_GAP_S = 1.0  # never faster than this, whatever the speed
SEND_ATTEMPTS = 4
SEND_TIMEOUT_S = 5.0
MAX_OPEN_ORDERS = 40
SHUTDOWN_POLL_S = 0.05  # how quickly stop() takes effect
SALES_REPS = ("zhang.wei", "li.na", "maria.lopez", "j.smith", "wang.fang")
DEFAULT_CUSTOMERS = (
    ("C-1", "Acme Gears"),
    ("C-2", "Northwind Motors"),
    ("C-3", "Huadong Pumps"),
    ("C-4", "Baltic Tools"),
)


# --------------------------------------------------------------------------- feedback side


@dataclass(frozen=True)
class Delivery:
    """One POST the CRM received from Loopline."""

    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: datetime
    status: int = 204
    path: str = "/"

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.body)


class CrmFeedbackServer:
    """A real local HTTP server playing the CRM's webhook endpoint; records every delivery."""

    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._webhook = Webhook(secret)
        self._host = host
        self._port = port
        self._lock = threading.Condition()
        self._received: list[Delivery] = []
        self._failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def received(self) -> list[Delivery]:
        """A snapshot of the deliveries so far, oldest first."""
        with self._lock:
            return list(self._received)

    @property
    def url(self) -> str:
        """Where to POST (valid once started)."""
        if self._server is None:
            raise RuntimeError("CrmFeedbackServer is not started")
        port = self._server.server_address[1]
        return f"http://{self._host}:{port}/crm/webhooks"

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` POSTs with ``status`` (they are still recorded)."""
        with self._lock:
            self._failures.extend([status] * n)

    def start(self) -> CrmFeedbackServer:
        """Listen in a background thread."""
        if self._server is not None:
            return self
        self._server = ThreadingHTTPServer((self._host, self._port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="crm-feedback",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and wait for the thread."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> CrmFeedbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_for(
        self, predicate: Callable[[Delivery], bool] = lambda d: True, timeout: float = 5.0
    ) -> Delivery:
        """The first delivery (already received or arriving within ``timeout``) that matches."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for delivery in self._received:
                    if predicate(delivery):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching delivery within {timeout} s")
                self._lock.wait(left)

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            self._webhook.verify(body, headers, json_parse=False)
            verified = True
        except (WebhookVerificationError, ValueError):
            verified = False
        with self._lock:
            status = self._failures.pop(0) if self._failures else (204 if verified else 401)
            self._received.append(
                Delivery(
                    webhook_id=headers.get("webhook-id", ""),
                    headers=headers,
                    body=body,
                    verified=verified,
                    at=datetime.now(UTC),
                    status=status,
                    path=path,
                )
            )
            self._lock.notify_all()
        return status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = server._record(self.path, headers, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("crm feedback: " + format, *args)

        return Handler


# --------------------------------------------------------------------------- order side


class _ServerError(Exception):
    """Loopline answered 5xx: worth another delivery of the same event."""


@dataclass
class _Order:
    id: str
    version: int
    customer: tuple[str, str]
    lines: list[dict[str, Any]]
    requested_date: date
    priority: str
    sales_rep: str
    status: str = "open"
    history: list[str] = field(default_factory=list)


class CrmSimulator:
    """The demo's CRM: owns the orders and tells Loopline about every change, signed."""

    def __init__(
        self,
        api_url: str,
        secret: str,
        *,
        rng: random.Random,
        products: list[str],
        speed: float = 1.0,
        interval_s: float = 4.0,
        customers: list[tuple[str, str]] | None = None,
        now: Callable[[], datetime] | None = None,
        first_order_no: int = 1001,
    ) -> None:
        if not products:
            raise ValueError("the CRM simulator needs at least one product SKU")
        self.api_url = api_url.rstrip("/")
        self._webhook = Webhook(secret)
        self.rng = rng
        self.products = list(products)
        self.speed = speed
        self.interval_s = interval_s
        self.customers = list(customers or DEFAULT_CUSTOMERS)
        self._now = now or (lambda: datetime.now(UTC))
        self._next_no = first_order_no
        self.orders: dict[str, _Order] = {}
        self._client = httpx.Client(timeout=SEND_TIMEOUT_S)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    # The book -------------------------------------------------------------------------

    def today(self) -> date:
        """The CRM's current date."""
        return self._now().date()

    def open_orders(self) -> list[_Order]:
        """Orders not cancelled, in id order."""
        return [o for o in self.orders.values() if o.status == "open"]

    def initial_orders(
        self, n: int, customers: list[tuple[str, str]], today: date
    ) -> list[dict[str, Any]]:
        """``n`` new orders for the given customers, as canonical ``order.upserted`` events."""
        if customers:
            self.customers = list(customers)
        return [self._event(self._new_order(today)) for _ in range(n)]

    def next_event(self) -> dict[str, Any]:
        """One realistic change to the book, as a canonical event (the order's version bumps)."""
        open_ = self.open_orders()
        if not open_:
            return self._event(self._new_order(self.today()))
        kinds = ["new", "qty", "date", "rush", "cancel"]
        weights = [0.3 if len(open_) < MAX_OPEN_ORDERS else 0.0, 0.25, 0.2, 0.1, 0.08]
        kind = self.rng.choices(kinds, weights)[0]
        if kind == "new":
            return self._event(self._new_order(self.today()))
        order = self.rng.choice(open_)
        order.version += 1
        if kind == "qty":
            line = self.rng.choice(order.lines)
            factor = self.rng.choice([0.5, 0.8, 1.2, 1.5, 2.0])
            line["qty"] = max(10, round(line["qty"] * factor / 10) * 10)
        elif kind == "date":
            shift = self.rng.choice([-3, -2, -1, 1, 2, 3, 5, 7])
            order.requested_date = max(
                self.today() + timedelta(days=2), order.requested_date + timedelta(days=shift)
            )
        elif kind == "rush":
            order.priority = "rush"
            earlier = order.requested_date - timedelta(days=self.rng.randint(1, 5))
            order.requested_date = max(self.today() + timedelta(days=2), earlier)
        else:
            order.status = "cancelled"
        order.history.append(kind)
        return self._event(order)

    def delivered_event(self, order_id: str, at: datetime | None = None) -> dict[str, Any] | None:
        """The order reached its customer (``at``, default: the event's time): an
        ``order.upserted`` with status ``delivered`` (None for an order this CRM does not
        hold open)."""
        order = self.orders.get(order_id)
        if order is None or order.status != "open":
            return None
        order.version += 1
        order.status = "delivered"
        order.history.append("delivered")
        event = self._event(order)
        event["order"]["status"] = "delivered"
        event["order"]["delivered_at"] = (
            at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at else event["occurred_at"]
        )
        return event

    def _new_order(self, today: date) -> _Order:
        order_id = f"SO-{self._next_no}"
        self._next_no += 1
        skus = self.rng.sample(self.products, k=min(len(self.products), self.rng.randint(1, 3)))
        order = _Order(
            id=order_id,
            version=1,
            customer=self.rng.choice(self.customers),
            lines=[{"sku": sku, "qty": self.rng.randrange(100, 2001, 50)} for sku in skus],
            requested_date=today + timedelta(days=self.rng.randint(3, 20)),
            priority=self.rng.choices(["normal", "high", "rush"], [0.8, 0.15, 0.05])[0],
            sales_rep=self.rng.choice(SALES_REPS),
            history=["new"],
        )
        self.orders[order_id] = order
        return order

    def _event(self, order: _Order) -> dict[str, Any]:
        occurred = self._now().astimezone(UTC).isoformat().replace("+00:00", "Z")
        if order.status == "cancelled":
            return {
                "type": "order.cancelled",
                "occurred_at": occurred,
                "order": {"id": order.id, "version": order.version},
            }
        return {
            "type": "order.upserted",
            "occurred_at": occurred,
            "order": {
                "id": order.id,
                "version": order.version,
                "customer": {"id": order.customer[0], "name": order.customer[1]},
                "lines": copy.deepcopy(order.lines),
                "requested_date": order.requested_date.isoformat(),
                "priority": order.priority,
                "sales_rep": order.sales_rep,
            },
        }

    # The wire -------------------------------------------------------------------------

    def signed_request(
        self, event: dict[str, Any], webhook_id: str
    ) -> tuple[bytes, dict[str, str]]:
        """The body and Standard Webhooks headers for one event, signed now."""
        body = json.dumps(event, separators=(",", ":"))
        stamp = datetime.now(UTC)  # wall clock: Loopline checks it against its own
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": self._webhook.sign(webhook_id, stamp, body),
        }
        return body.encode(), headers

    def send(self, event: dict[str, Any]) -> int:
        """Sign and POST one event to Loopline; the HTTP status.

        Connection errors and 5xx answers are retried with the same ``webhook-id``, as a
        CRM's delivery would be (a redelivery is a ``duplicate``, never applied twice).
        ``202`` means recorded: Loopline's worker applies the change (or parks it for
        approval) shortly after, and its feedback comes back through the outbox.
        """
        webhook_id = f"evt_{uuid.uuid4().hex}"  # the same id on every retry of this event
        for attempt in Retrying(
            retry=retry_if_exception_type((httpx.TransportError, _ServerError)),
            stop=stop_after_attempt(SEND_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        ):
            with attempt:
                body, headers = self.signed_request(event, webhook_id)
                response = self._client.post(
                    self.api_url + EVENTS_PATH, content=body, headers=headers
                )
                if response.status_code >= 500 and attempt.retry_state.attempt_number < (
                    SEND_ATTEMPTS
                ):
                    raise _ServerError(response.status_code)
        if response.status_code >= 300:
            log.warning(
                "CRM event %s for %s answered %d: %s",
                event["type"],
                event["order"]["id"],
                response.status_code,
                response.text[:200],
            )
        else:
            log.debug(
                "CRM event %s for %s v%s: %s",
                event["type"],
                event["order"]["id"],
                event["order"]["version"],
                response.text[:200],
            )
        return response.status_code

    def delay_s(self) -> float:
        """Seconds until the next event: about ``interval_s / speed``, at least a second."""
        return max(MIN_EVENT_GAP_S, self.interval_s / self.speed * self.rng.uniform(0.5, 1.5))

    def run(self, stop: threading.Event) -> None:
        """Send one change every ``delay_s()`` until ``stop`` is set; errors are logged."""
        while not stop.wait(self.delay_s()):
            event = self.next_event()
            try:
                self.send(event)
            except Exception:
                log.exception("CRM simulator could not send %s", event["type"])
