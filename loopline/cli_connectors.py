"""``loopline connectors list|check``: the CRM connector files, and a sample through one."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

connectors_app = typer.Typer(no_args_is_help=True, help="CRM connectors: list them, check one.")


def _missing_env(connector: object) -> list[str]:
    """The environment variables a connector needs that are not set."""
    from loopline.ingest.crm.connector import Connector

    assert isinstance(connector, Connector)
    wanted = [connector.auth.secret_env, connector.auth.organization_id_env]
    for api in (connector.fetch, connector.writeback):
        if api is not None:
            wanted += [api.token_env, api.login_env, api.database_env]
            if not api.base_url:
                wanted.append(api.base_url_env)
    return [n for n in dict.fromkeys(wanted) if n and not os.environ.get(n)]


def _entry(connector: object) -> str:
    from loopline.ingest.crm.connector import Connector

    assert isinstance(connector, Connector)
    if connector.auth.kind == "import":
        return f"loopline import-orders FILE --mapping {connector.name}"
    return f"POST /api/v1/crm/{connector.name}/events"


@connectors_app.command("list")
def connectors_list() -> None:
    """List the connectors (shipped presets and LOOPLINE_CONNECTORS_DIR's), the route each
    posts to, and the settings each still needs."""
    from loopline.ingest.crm.connector import ConnectorFileError, Registry
    from loopline.settings import Settings

    try:
        registry = Registry(Settings().connectors_dir)
    except ConnectorFileError as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(2) from None
    for name in registry.names():
        c = registry.get(name)
        missing = _missing_env(c)
        state = "ready" if not missing else "needs " + ", ".join(missing)
        writeback = c.writeback.kind if c.writeback else "-"
        sys.stdout.write(
            f"{name:<14} {c.auth.kind:<18} write-back {writeback:<12} {state}\n"
            f"{'':<14} {c.title}  {_entry(c)}  ({registry.files.get(name, '?')})\n"
        )


@connectors_app.command("check")
def connectors_check(
    connector: Annotated[str, typer.Argument(help="A connector file, or a connector's name")],
    sample: Annotated[Path, typer.Argument(help="A sample body (JSON, or XML for SOAP)")],
) -> None:
    """Map a sample body through a connector: prints the canonical event(s), or the failing
    field(s) in the CRM's own names (exit 1). Nothing is stored; no signature is checked."""
    from loopline.ingest.crm.check import check_sample
    from loopline.ingest.crm.connector import ConnectorFileError, Registry, UnknownSource, load_file
    from loopline.settings import Settings

    try:
        path = Path(connector)
        if path.suffix in (".yaml", ".yml", ".json") or path.exists():
            chosen = load_file(path)
        else:
            chosen = Registry(Settings().connectors_dir).get(connector)
        body = sample.read_bytes()
    except (ConnectorFileError, UnknownSource, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(2) from None
    result = check_sample(chosen, body)
    for event, ref in zip(result.events, result.refs, strict=True):
        shown = event if event is not None else {"ignored": True}
        if ref is not None:
            shown = {**shown, "ref": ref}
        sys.stdout.write(json.dumps(shown, ensure_ascii=False, indent=2) + "\n")
    for error in result.errors:
        sys.stderr.write(f"{error['field']}: {error['message']}\n")
    if not result.ok:
        raise typer.Exit(1)


def import_orders(
    file: Annotated[Path, typer.Argument(help="An .xlsx or .csv file, one row per order line")],
    mapping: Annotated[
        str, typer.Option(help="The column mapping: an import connector's name or file")
    ] = "orders-sheet",
    sheet: Annotated[str | None, typer.Option(help="The worksheet (default: the first)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row, write nothing")
    ] = False,
) -> None:
    """Import orders from a spreadsheet: every row is checked first (errors name the row and
    column, and then nothing is written); the orders then take the CRM events' path (versions,
    approvals; the worker applies them)."""
    from loopline.ingest.crm.connector import ConnectorFileError, Registry, UnknownSource, load_file
    from loopline.ingest.crm.sheet import SheetError, import_sheet
    from loopline.models.db import make_sessions
    from loopline.runtime import open_database
    from loopline.settings import Settings

    try:
        path = Path(mapping)
        chosen = (
            load_file(path)
            if path.suffix in (".yaml", ".yml", ".json")
            else Registry(Settings().connectors_dir).get(mapping)
        )
        file.stat()
    except (ConnectorFileError, UnknownSource, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(2) from None
    engine = open_database(Settings())
    try:
        done = import_sheet(
            make_sessions(engine),
            chosen,
            file,
            actor=f"import:{file.name}"[:100],
            dry_run=dry_run,
            sheet=sheet,
        )
    except (SheetError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    plan = done.plan
    for error in plan.errors:
        sys.stdout.write(f"{error}\n")
    orders = len(plan.events)
    if plan.errors:
        sys.stdout.write(
            f"{len(plan.errors)} error{'s' if len(plan.errors) != 1 else ''} in "
            f"{file.name}: nothing imported\n"
        )
        raise typer.Exit(1)
    if dry_run:
        for event, numbers in plan.events:
            sys.stdout.write(
                f"{event.type} {event.order.id} v{event.order.version} "
                f"(rows {', '.join(map(str, numbers))})\n"
            )
        sys.stdout.write(f"dry run: {orders} orders from {done.rows} rows would be imported\n")
        return
    shown = ", ".join(f"{n} {k}" for k, n in sorted(done.counts().items()))
    sys.stdout.write(
        f"imported {orders} orders from {done.rows} rows ({shown}); the worker applies them\n"
    )


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_every(text: str) -> float:
    """``10m``, ``90s``, ``1h`` or plain seconds, as seconds; raises ValueError."""
    m = DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--every: '{text}' is not a period such as 10m, 90s or 1h")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


def reconcile_cmd(
    source: Annotated[str, typer.Option(help="The connector whose CRM is read (e.g. odoo)")],
    every: Annotated[
        str | None,
        typer.Option(help="Pull again each period (10m, 90s, 1h) until stopped (Ctrl-C)"),
    ] = None,
) -> None:
    """Compare the CRM's open orders with Loopline's once (or each ``--every``) and repair
    what webhooks missed (each repair is recorded in the audit log; the worker applies them).
    ``loopline worker`` does the same for LOOPLINE_RECONCILE_SOURCES."""
    from loopline.ingest.crm.connector import Registry, UnknownSource
    from loopline.ingest.crm.crm_api import FetchError
    from loopline.ingest.crm.reconcile import Reconciler, reconcile
    from loopline.models.db import make_sessions
    from loopline.runtime import open_database
    from loopline.settings import Settings

    settings = Settings()
    try:
        connector = Registry(settings.connectors_dir).get(source)
        period = parse_every(every) if every is not None else None
    except (UnknownSource, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(2) from None
    if connector.reconcile is None:
        sys.stderr.write(
            f"reconcile {source}: connector {source} names no CRM API to read "
            f"(no reconcile section)\n"
        )
        raise typer.Exit(1)
    engine = open_database(settings)
    if period is not None:
        import redis

        from loopline.cli import _logging, _wait_for_signal

        _logging(False)
        status = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
        puller = Reconciler(
            make_sessions(engine),
            [connector],
            every_s=period,
            alert_after=settings.reconcile_alert_after,
            status=status,
        )
        puller.start()
        try:
            _wait_for_signal()
        finally:
            puller.stop()
            engine.dispose()
        return
    try:
        result = reconcile(make_sessions(engine), connector)
    except (FetchError, ValueError) as exc:
        sys.stderr.write(f"reconcile {source}: {exc}\n")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    for order_id, why in sorted(result.repaired.items()):
        sys.stdout.write(f"repaired {order_id}: {why}\n")
    for label, why in sorted(result.failed.items()):
        sys.stdout.write(f"could not map {label}: {why}\n")
    sys.stdout.write(
        f"reconcile {source}: {result.checked} CRM orders checked, "
        f"{len(result.repaired)} repaired, {len(result.failed)} not mappable\n"
    )
