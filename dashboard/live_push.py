"""Live push for the screens: one long-running websocket callback per open page.

Each live page renders fully from the live state (its layout function) and stores what
it rendered (``shown``), its query parameters (``params``) and a random ``token`` in a
``dcc.Store``. That store is the
Input of a websocket callback which never returns: it follows the change channel and
sends only what changed with ``set_props``. Around that loop:

* **Resync.** The subscription starts a moment after the render, so the stream first
  compares the current state with the rendered snapshot and pushes the difference; every
  ``RECONCILE_S`` it does so again, because pub/sub is at-most-once (a Redis reconnect
  drops messages) and a wall screen runs for weeks.
* **Heartbeat and watchdog.** The stream sets its Output's ``title`` every
  ``HEARTBEAT_S``. A client-side callback (a browser timer, no server round trip) marks the
  page stale when beats stop and restarts the stream with a new token and ``shown: null``,
  which makes the stream re-render everything: this is how a page recovers from a server
  restart, since Dash restarts only *persistent* websocket callbacks on reconnect and
  those do not work under Dash Pages.
* **Store outage.** When a read fails because Redis (or the database) is down, the page
  keeps what it shows, greyed under "stale since HH:MM", and the stream retries every
  ``REDIS_RETRY_S``; its heartbeat goes on, marked ``DOWN_MARK`` so the watchdog shows the
  banner without restarting it. The first good read pushes what changed and clears it. A
  page opened during the outage renders the last good reading (``Screens.last_good``).
* **Liveness.** Dash's websocket is shared by every tab of a browser (a SharedWorker),
  so a closed tab or an in-app navigation does not end the callback. Every
  ``ALIVE_CHECK_S`` the stream reads its Store back from the browser; when the page is
  gone (no answer, no component) or shows another token, the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any

import dash
import redis.asyncio as aredis
from dash import Input, Output, State, ctx, set_props
from dash.exceptions import PreventUpdate

from loopline.dashboard.i18n import fmt_clock, normalize_lang, t
from loopline.dashboard.ids import LiveIds, part
from loopline.dashboard.last_good import LastGood, Reading
from loopline.models.clock import parse_time, utcnow
from loopline.models.live import Change, LiveState, follow_batches
from loopline.models.stores import STORE_DOWN

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("loopline.dashboard")

TICK_S = 1.0  # how often the loop wakes without changes (clock, ages, shutdown check)
BATCH_S = 0.05  # changes arriving within this window are drawn together (one ingest batch)
HEARTBEAT_S = 10.0
ALIVE_CHECK_S = 30.0
ALIVE_TIMEOUT_S = 10.0
RECONCILE_S = 60.0
REDIS_RETRY_S = 2.0
# The browser side of the watchdog (milliseconds, used in the client-side callback).
WATCHDOG_INTERVAL_MS = 5_000
STALE_AFTER_MS = 30_000
RESTART_EVERY_MS = 15_000

# entity id -> part kind -> props
Views = dict[str, dict[str, dict[str, Any]]]
# component id -> props
Singles = dict[str, dict[str, Any]]


_active = 0


def active_streams() -> int:
    """How many page streams this process is running (for metrics and tests)."""
    return _active


@dataclass(frozen=True)
class Screens:
    """What every screen needs: the live state to render from and how to follow it, and
    the records' sessions for the screens that show the system of record (``/plan``)."""

    live: LiveState
    new_async_redis: Callable[[], aredis.Redis]
    default_lang: str = "en"
    tz: tzinfo | None = None  # None: the server's local time zone
    now: Callable[[], datetime] = field(default=utcnow)
    sessions: sessionmaker[Session] | None = None  # None: no database behind these screens
    last_good: LastGood = field(default_factory=LastGood)  # for pages opened in an outage
    # A record's wall-clock timestamp on ``now``'s timeline (the demo's clock runs fast).
    record_time: Callable[[datetime], datetime] = field(default=lambda moment: moment)

    def shown(self, value: str | None) -> str | None:
        """A record's timestamp (ISO text) as the screens show it: on their clock."""
        moment = parse_time(value)
        return None if moment is None else self.record_time(moment).isoformat()


BANNER = "stale-banner"
BANNER_SHOWN = "stale-banner stale-banner--show"
DOWN_MARK = " down"  # ends the heartbeat title while the stream cannot read its store


def stale_since(moment: datetime, lang: str, tz: tzinfo | None) -> str:
    """The banner of a page whose data was last good at ``moment``."""
    return t("live.stale_since", lang, time=fmt_clock(moment, tz))


def outage_notice(reading: Reading[Any], lang: str, tz: tzinfo | None) -> str | None:
    """What a page rendered from ``reading`` must say about it (None: it is fresh)."""
    if reading.fresh:
        return None
    if reading.read_at is not None:
        return stale_since(reading.read_at, lang, tz)
    assert reading.down_since is not None
    return t("live.unavailable_since", lang, time=fmt_clock(reading.down_since, tz))


def new_token() -> str:
    """A fresh token naming one rendering of a page."""
    return uuid.uuid4().hex


def diff_views(old: Views | None, new: Views) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The props that differ between two views, as ``(entity id, part kind, props)``."""
    old = old or {}
    for entity_id, parts in new.items():
        before = old.get(entity_id, {})
        for kind, props in parts.items():
            prev = before.get(kind, {})
            changed = {k: v for k, v in props.items() if prev.get(k) != v}
            if changed:
                yield entity_id, kind, changed


def diff_singles(old: Singles | None, new: Singles) -> Iterator[tuple[str, dict[str, Any]]]:
    """The props that differ between two sets of single components."""
    old = old or {}
    for component_id, props in new.items():
        prev = old.get(component_id, {})
        changed = {k: v for k, v in props.items() if prev.get(k) != v}
        if changed:
            yield component_id, changed


def push_views(key: str, old: Views | None, new: Views) -> int:
    """Send what changed between two views; returns how many parts were sent."""
    sent = 0
    for entity_id, kind, props in diff_views(old, new):
        set_props(part(kind, key, entity_id), props)
        sent += 1
    return sent


def push_singles(old: Singles | None, new: Singles) -> int:
    """Send what changed among single components; returns how many were sent."""
    sent = 0
    for component_id, props in diff_singles(old, new):
        set_props(component_id, props)
        sent += 1
    return sent


def push_list(
    container_id: str,
    *,
    key: str,
    old_order: list[str] | None,
    order: list[str],
    old_views: Views | None,
    views: Views,
    render: Callable[[], Any],
    container_props: dict[str, Any] | None = None,
) -> None:
    """Send a list of repeated items: the changed parts only, or all of it when items moved.

    After replacing a container's children, Dash 4.4's renderer does not redraw a child
    that has the same id at the same place as before (it is memoised by path), even when
    its props changed; so every part is pushed once more, by id, after the new children.
    """
    if old_views is not None and order == old_order:
        push_views(key, old_views, views)
        return
    set_props(container_id, {"children": render(), **(container_props or {})})
    push_views(key, None, views)


class PageStream:
    """Base of one open page's live behaviour, driven by :func:`run_stream`.

    It keeps what the browser said it was rendered with (``params``, ``shown``) and the
    page's language; a subclass says which changes it wants and how it reads and pushes.
    Pages whose text moves with the clock ("5 min ago", "tomorrow") call ``redraw`` from
    ``on_tick`` once a minute through :meth:`new_minute`.
    """

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        self.screens = screens
        self.params: dict[str, Any] = start.get("params") or {}
        self.shown: dict[str, Any] = start.get("shown") or {}
        self.lang = normalize_lang(self.params.get("lang"), screens.default_lang)
        self.minute = ""

    # How long calm changes (see ``urgent``) may wait to be drawn together: 0 draws every
    # change as it comes (after ``BATCH_S``).
    calm_s: float = 0.0

    def wants(self, change: Change) -> bool:
        """Whether a change can alter this page."""
        raise NotImplementedError

    def urgent(self, change: Change) -> bool:
        """Whether a wanted change must be drawn at once rather than within ``calm_s``."""
        return True

    async def resync(self) -> None:
        """Read the state afresh and push whatever differs from what the page shows."""
        raise NotImplementedError

    async def on_changes(self, changes: list[Change]) -> None:
        """Apply a batch of wanted changes (possibly empty) and push what they alter."""
        raise NotImplementedError

    async def on_tick(self, now: datetime) -> None:
        """Time passed: by default, redraw once a minute (clocks and ages move)."""
        if self.new_minute(now):
            self.redraw(now)

    def redraw(self, now: datetime) -> None:
        """Push what the page shows at ``now`` (pages that move with the clock)."""

    def new_minute(self, now: datetime) -> bool:
        """Whether ``now`` is in another minute than the last redraw; marks it drawn."""
        minute = now.strftime("%Y%m%d%H%M")
        if minute == self.minute:
            return False
        self.minute = minute
        return True


class ListStream(PageStream):
    """A page showing a list of repeated items plus single counters: remembers the order,
    the items' views and the singles it last pushed, and sends only what changed."""

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.order: list[str] | None = self.shown.get("order")
        self.views: Views | None = self.shown.get("views")
        self.singles: Singles | None = self.shown.get("singles")

    def push(
        self,
        container_id: str,
        *,
        key: str,
        order: list[str],
        views: Views,
        render: Callable[[], Any],
        singles: Singles,
        container_props: dict[str, Any] | None = None,
    ) -> None:
        """Send the list (see :func:`push_list`) and the singles, and remember them."""
        push_list(
            container_id,
            key=key,
            old_order=self.order,
            order=order,
            old_views=self.views,
            views=views,
            render=render,
            container_props=container_props,
        )
        self.order, self.views = order, views
        push_singles(self.singles, singles)
        self.singles = singles


class RecordsStream(PageStream):
    """A page that shows records (SQL): a wanted change marks it for a read, made at most
    once per ``min_redraw_s`` (a burst of announcements is read once), and the stream's
    regular resync reads afresh in case one was missed. A subclass says what to read
    (``reading``) and how to show it (``show``)."""

    min_redraw_s = 1.0

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.dirty = False
        self.read_at = 0.0  # time.monotonic() of the last read

    def reading(self) -> tuple[Any, Callable[[], Any]]:
        """The key this page's last good reading is kept under, and the read itself."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Push what ``data`` changes on the page."""
        raise NotImplementedError

    async def resync(self) -> None:
        """Read the records afresh and push what differs."""
        await self.refresh()

    async def on_changes(self, changes: list[Change]) -> None:
        """Mark the page for a read; read now unless one was just made."""
        if changes:
            self.dirty = True
        await self.maybe_refresh()

    async def on_tick(self, now: datetime) -> None:
        """Read now if an announcement was held back by ``min_redraw_s``."""
        await self.maybe_refresh()

    async def maybe_refresh(self) -> None:
        """Read if marked, at most once per ``min_redraw_s``."""
        if self.dirty and time.monotonic() - self.read_at >= self.min_redraw_s:
            await self.refresh()

    async def refresh(self) -> None:
        """Read the records and show them; a failed read keeps what is shown."""
        self.dirty = False
        self.read_at = time.monotonic()
        key, read = self.reading()
        try:
            data = await asyncio.to_thread(
                self.screens.last_good.fresh, key, read, self.screens.now()
            )
        except STORE_DOWN:
            raise  # the stream greys the page and retries
        except Exception:  # noqa: BLE001 - the database may be restarting; try again later
            log.warning("%s: reading the records failed", type(self).__name__, exc_info=True)
            return
        self.show(data)


class Pacer:
    """Decides when a page draws the changes it wants: calm ones together once ``calm_s``
    passed since the last such draw; an urgent one at once, with the held changes of the
    same entity only (in order: a field is never drawn older than it was), the others
    keeping their time. Why not all: each drawn part costs the browser; a line stopping
    must not wait for every count on the wall. ``calm_s = 0`` draws everything as it
    comes."""

    def __init__(self, page: PageStream) -> None:
        self.page = page
        self.held: list[Change] = []
        self.drawn_at = -math.inf

    def wait_s(self, now_s: float, idle_s: float) -> float:
        """How long to wait for more changes before the held ones are due."""
        if not self.held:
            return idle_s
        return max(0.001, min(idle_s, self.drawn_at + self.page.calm_s - now_s))

    def urgent_in(self, changes: list[Change]) -> bool:
        """Whether a paced page (``calm_s > 0``) must draw one of these at once: then the
        stream does not wait ``BATCH_S`` for more to come."""
        page = self.page
        return page.calm_s > 0 and any(page.wants(c) and page.urgent(c) for c in changes)

    def take(self, changes: list[Change], now_s: float) -> list[Change]:
        """Add newly arrived changes; return those to draw now (possibly none)."""
        wanted = [c for c in changes if self.page.wants(c)]
        self.held.extend(wanted)
        if not self.held:
            return []
        if now_s - self.drawn_at >= self.page.calm_s:
            draw, self.held, self.drawn_at = self.held, [], now_s
            return draw
        urgent = {(c.entity, c.id) for c in wanted if self.page.urgent(c)}
        if not urgent:
            return []
        draw = [c for c in self.held if (c.entity, c.id) in urgent]
        self.held = [c for c in self.held if (c.entity, c.id) not in urgent]
        return draw

    def drop(self) -> None:
        """Forget the held changes (a resync reads everything afresh)."""
        self.held = []


async def _pump(client: aredis.Redis, queue: asyncio.Queue[list[Change]]) -> None:
    async for batch in follow_batches(client):
        queue.put_nowait(batch)


async def _still_shown(ws: Any, start_id: str, token: str) -> bool:
    """Whether the browser still shows the page rendering this stream serves."""
    try:
        data = await ws.get_prop(start_id, "data", timeout=ALIVE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - timeout or disconnect both mean "gone"
        return False
    return isinstance(data, dict) and data.get("token") == token


class _Banner:
    """The stale banner as the stream drives it: hidden text kept current while the data
    is fresh (so the watchdog, revealing it when the server goes, shows the right time),
    shown with the time of the last good read while the store is down."""

    def __init__(self, stale_id: str, screens: Screens, lang: str, notice: str | None) -> None:
        self.stale_id, self.screens, self.lang = stale_id, screens, lang
        self.notice = notice  # what the layout said about its data, until a good read
        self.shown: dict[str, Any] = {}
        self.last_good = screens.now()
        self.down = False

    def set(self, props: dict[str, Any]) -> None:
        changed = {k: v for k, v in props.items() if self.shown.get(k) != v}
        if changed:
            set_props(self.stale_id, changed)
            self.shown.update(changed)

    def good(self) -> None:
        self.last_good, self.down, self.notice = self.screens.now(), False, None
        text = stale_since(self.last_good, self.lang, self.screens.tz)
        self.set({"className": BANNER, "children": text})

    def failed(self) -> None:
        self.down = True
        text = self.notice or stale_since(self.last_good, self.lang, self.screens.tz)
        self.set({"className": BANNER_SHOWN, "children": text})


async def run_stream(
    page: PageStream,
    *,
    screens: Screens,
    start_id: str,
    heartbeat_id: str,
    stale_id: str,
    token: str,
    lang: str,
    notice: str | None = None,
) -> None:
    """Follow the live changes for one open page until the page or its connection goes.

    While the store cannot be read the page keeps what it shows, greyed under "stale since
    HH:MM", and the stream retries every ``REDIS_RETRY_S``; the first good read pushes what
    changed meanwhile and clears the banner.
    """
    global _active
    ws = ctx.websocket
    if ws is None:  # not over a websocket: nothing can be pushed later
        return
    _active += 1
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[Change]] = asyncio.Queue()
    client = screens.new_async_redis()
    reader = asyncio.create_task(_pump(client, queue))
    banner = _Banner(stale_id, screens, lang, notice)
    beats = 0
    alive: asyncio.Task[bool] | None = None  # the browser's answer to "still shown?"

    def beat() -> None:
        nonlocal beats
        beats += 1
        mark = DOWN_MARK if banner.down else ""
        set_props(heartbeat_id, {"title": f"{beats} {screens.now().isoformat()}{mark}"})

    async def guarded(step: Callable[[], Any]) -> bool:
        """Run a read-and-push step; a store error puts the page in its outage state."""
        try:
            await step()
        except STORE_DOWN as exc:
            if not banner.down:
                log.warning("stream %s: store unreachable (%r); showing stale data", start_id, exc)
            banner.failed()
            return False
        return True

    try:
        if await guarded(page.resync):
            banner.good()
        beat()
        now_s = loop.time()
        last_beat = last_alive = last_reconcile = last_retry = now_s
        pacer = Pacer(page)
        while not ws.is_shutdown:
            changes: list[Change] = []
            try:
                wait = pacer.wait_s(loop.time(), TICK_S)
                changes.extend(await asyncio.wait_for(queue.get(), timeout=wait))
                if not pacer.urgent_in(changes):
                    await asyncio.sleep(BATCH_S)
                while not queue.empty():
                    changes.extend(queue.get_nowait())
            except TimeoutError:
                pass
            if ws.is_shutdown:
                break
            if reader.done():
                reader = await _restart_reader(reader, client, queue)
                last_reconcile = 0.0  # messages may have been lost meanwhile
            now_s = loop.time()
            draw = pacer.take(changes, now_s)
            if banner.down:
                pacer.drop()  # the resync below reads everything afresh
                if now_s - last_retry >= REDIS_RETRY_S:
                    last_retry = now_s
                    if await guarded(page.resync):
                        banner.good()
                        last_reconcile = loop.time()
                        beat()
            elif await guarded(partial(page.on_changes, draw)):
                await guarded(partial(page.on_tick, screens.now()))
                now_s = loop.time()
                if now_s - last_reconcile >= RECONCILE_S:
                    last_reconcile = now_s
                    if await guarded(page.resync):
                        banner.good()
                if banner.down:
                    beat()  # tell the watchdog at once
                    last_retry = now_s
            now_s = loop.time()
            if now_s - last_beat >= HEARTBEAT_S:
                last_beat = now_s
                if not banner.down:
                    banner.good()  # keeps the hidden "stale since" text at the minute
                beat()
            # Why a task: the answer is a round trip to a browser that may be busy; waiting
            # for it here would hold back every change meanwhile (seen as the worst tile
            # latencies under load).
            if alive is None and now_s - last_alive >= ALIVE_CHECK_S:
                alive = asyncio.create_task(_still_shown(ws, start_id, token))
            elif alive is not None and alive.done():
                if not alive.result():
                    log.debug("stream %s ends: token %s is gone", start_id, token)
                    break
                alive, last_alive = None, loop.time()
    finally:
        _active -= 1
        if alive is not None:
            alive.cancel()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        with contextlib.suppress(Exception):
            await client.aclose()


async def _restart_reader(
    reader: asyncio.Task[None], client: aredis.Redis, queue: asyncio.Queue[list[Change]]
) -> asyncio.Task[None]:
    exc = reader.exception() if not reader.cancelled() else None
    log.warning("live change follower stopped (%r); restarting", exc)
    await asyncio.sleep(REDIS_RETRY_S)
    return asyncio.create_task(_pump(client, queue))


def watchdog_js(*, stale_after_ms: int = STALE_AFTER_MS) -> str:
    """The client-side watchdog: marks the page stale and restarts a silent stream.

    The page is stale when beats stop (the server or the connection is gone) or when the
    last beat says the stream cannot read its store (it ends with ``DOWN_MARK``; the stream
    is alive and retrying, so it is not restarted). Before the first beat the banner is
    left as the layout rendered it (a page opened during an outage says so).

    Inputs: the watchdog interval; States: the heartbeat title and the start Store.
    Outputs: the stale banner's className and the start Store's data.
    """
    return f"""
function(_n, beat, start) {{
    const nu = window.dash_clientside.no_update;
    if (!start || !start.token) {{ return [nu, nu]; }}
    const all = window.__looplineWatch || (window.__looplineWatch = {{}});
    const now = Date.now();
    let s = all[start.token];
    if (!s) {{ s = all[start.token] = {{beat: beat, at: now, restarted: 0}}; }}
    if (beat !== s.beat) {{ s.beat = beat; s.at = now; }}
    const stale = now - s.at > {stale_after_ms};
    const down = typeof beat === "string" && beat.endsWith("{DOWN_MARK}");
    let banner = stale || down ? "{BANNER_SHOWN}" : "{BANNER}";
    if (!beat && !stale) {{ banner = nu; }}
    let restart = nu;
    if (stale && now - s.restarted > {RESTART_EVERY_MS}) {{
        const token = Math.random().toString(16).slice(2) + now.toString(16);
        restart = {{token: token, params: start.params, shown: null}};
        all[token] = {{beat: beat, at: s.at, restarted: now}};
    }}
    return [banner, restart];
}}
"""


def register_screen(
    app: Any,
    module: str,
    *,
    screens: Screens,
    path: str,
    name: str,
    title: str,
    layout: Callable[..., Any],
    live_ids: LiveIds,
    stream: Callable[[Screens, dict[str, Any]], PageStream],
) -> None:
    """Register a live page: its Dash page at ``path`` and its stream (see
    :func:`register_live_page`)."""
    dash.register_page(module, path=path, title=title, name=name, layout=layout)
    register_live_page(app, screens=screens, live_ids=live_ids, stream=stream)


def register_live_page(
    app: Any,
    *,
    screens: Screens,
    live_ids: LiveIds,
    stream: Callable[[Screens, dict[str, Any]], PageStream],
) -> None:
    """Wire a page's stream (websocket callback) and its client-side watchdog."""
    start_id, heartbeat_id = live_ids.start, live_ids.heartbeat
    watchdog_id, stale_id = live_ids.watchdog, live_ids.stale

    @app.callback(
        Output(heartbeat_id, "title"),
        Input(start_id, "data"),
        websocket=True,
        prevent_initial_call=False,
    )
    async def _stream(start: dict[str, Any] | None) -> str:
        if not isinstance(start, dict) or not start.get("token"):
            raise PreventUpdate
        log.debug(
            "stream %s starts: token %s, full=%s",
            start_id,
            start["token"],
            start.get("shown") is None,
        )
        await run_stream(
            stream(screens, start),
            screens=screens,
            start_id=start_id,
            heartbeat_id=heartbeat_id,
            stale_id=stale_id,
            token=str(start["token"]),
            lang=normalize_lang((start.get("params") or {}).get("lang"), screens.default_lang),
            notice=start.get("notice"),
        )
        raise PreventUpdate

    app.clientside_callback(
        watchdog_js(),
        Output(stale_id, "className"),
        Output(start_id, "data"),
        Input(watchdog_id, "n_intervals"),
        State(heartbeat_id, "title"),
        State(start_id, "data"),
        prevent_initial_call=True,
    )
