"""The ``loopline`` command line (DESIGN.md, "Command line")."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Loopline: the live link between a CRM and the production lines.",
)
console = Console(stderr=True)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    for noisy in ("amqtt", "transitions", "httpx", "httpcore", "alembic", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass


@app.command()
def demo(
    host: str = "127.0.0.1",
    port: int = 8050,
    mqtt_port: int = 1883,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second")] = 60.0,
    verbose: bool = False,
) -> None:
    """Run everything in one process on embedded defaults, with a simulated factory and CRM."""
    _logging(verbose)
    from loopline.demo import print_banner, start_demo
    from loopline.settings import Settings

    running = start_demo(Settings(), host=host, port=port, mqtt_port=mqtt_port, speed=speed)
    print_banner(running, Console(soft_wrap=True))
    try:
        _wait_for_signal()
    finally:
        console.print("stopping…")
        running.stop()
        console.print("stopped")


@app.command()
def serve(host: str = "0.0.0.0", port: int = 8050, verbose: bool = False) -> None:
    """Serve the API, the live stream, the CRM webhook and the screens."""
    _logging(verbose)
    import uvicorn

    from loopline.runtime import build_app, build_runtime
    from loopline.settings import Settings

    rt = build_runtime(Settings(), demo=False)
    uvicorn.run(build_app(rt), host=host, port=port, log_level="info", ws="websockets-sansio")


@app.command()
def ingest(verbose: bool = False) -> None:
    """Consume shop-floor MQTT into the live state."""
    _logging(verbose)
    from loopline.runtime import build_consumer, build_runtime
    from loopline.settings import Settings

    rt = build_runtime(Settings(), demo=False)
    if not rt.resolved.mqtt_url:
        raise SystemExit("LOOPLINE_MQTT_URL is required for `loopline ingest`")
    consumer = build_consumer(rt, rt.resolved.mqtt_url)
    consumer.start()
    try:
        _wait_for_signal()
    finally:
        consumer.stop()
        rt.close()


@app.command()
def worker(verbose: bool = False) -> None:
    """Replan on order changes, evaluate alerts, and relay feedback to the CRM."""
    _logging(verbose)
    from loopline.runtime import build_loop, build_runtime, build_status_watcher
    from loopline.settings import Settings
    from models.loop import request_replan

    rt = build_runtime(Settings(), demo=False)
    loop = build_loop(rt)
    # A dead ingest (its Will says offline) is an alert; the worker is who watches.
    watcher = build_status_watcher(rt, rt.resolved.mqtt_url) if rt.resolved.mqtt_url else None
    if not rt.live.ids("line"):
        from models.replan import sync_live

        with rt.sessions() as session:
            sync_live(session, rt.live, now=rt.clock.now(), rebuild=True)
    request_replan(rt.live.redis, "worker start")
    loop.start()
    if watcher is not None:
        watcher.start()
    try:
        _wait_for_signal()
    finally:
        if watcher is not None:
            watcher.stop()
        loop.stop()
        rt.close()


@app.command()
def plan(
    input: Annotated[Path, typer.Option("--input", "-i", help="Problem JSON (DESIGN.md)")],
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Seconds of search (default: by size)")
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option("--rounds", help="Rounds of search instead of a time limit (repeatable)"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Solve a planning problem file and print the schedule as JSON.

    The file is the contract's format plus optional ``calendars``, ``changeovers`` and
    ``materials``; the output has the assignments, ``total_weighted_tardiness_h``, the
    late and at-risk jobs with their reasons, and purchase requests.
    """
    from models.planning import ProblemError, plan_json

    try:
        data = json.loads(input.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        console.print(f"[red]cannot read {input}: {exc}[/]")
        raise typer.Exit(2) from exc
    try:
        result = plan_json(data, time_limit=time_limit, max_rounds=rounds, seed=seed)
    except ProblemError as exc:
        console.print(f"[red]invalid problem:[/] {exc}")
        raise typer.Exit(2) from exc
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


@app.command("rebuild-state")
def rebuild_state() -> None:
    """Restore the live state in Redis from SQL (after a Redis loss)."""
    _logging(False)
    from loopline.runtime import build_runtime
    from loopline.settings import Settings
    from models.replan import sync_live

    rt = build_runtime(Settings(), demo=False)
    with rt.sessions() as session:
        sync_live(session, rt.live, now=rt.clock.now(), rebuild=True)
    console.print(f"rebuilt: {len(rt.live.ids('line'))} lines, {len(rt.live.ids('order'))} orders")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    _logging(False)
    from loopline.runtime import open_database
    from loopline.settings import Settings

    open_database(Settings()).dispose()
    console.print("database is up to date")


@app.command("import-factory")
def import_factory_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            help="Factory master data (JSON): sites, products, lines, customers, materials"
        ),
    ],
) -> None:
    """Create or update sites, products, lines (rates, calendars), customers, materials."""
    _logging(False)
    from ingest.factory_file import FactoryFileError, import_factory, parse_factory
    from loopline.runtime import open_database
    from loopline.settings import Settings
    from models.db import make_sessions, transaction

    try:
        factory = parse_factory(json.loads(file.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        console.print(f"[red]cannot read {file}: {exc}[/]")
        raise typer.Exit(2) from exc
    except FactoryFileError as exc:
        console.print(f"[red]invalid factory file:[/] {exc}")
        raise typer.Exit(2) from exc
    engine = open_database(Settings())
    try:
        with transaction(make_sessions(engine)) as session:
            counts = import_factory(session, factory, actor="cli")
    except FactoryFileError as exc:  # names the database does not know either
        console.print(f"[red]invalid factory file:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    console.print(f"imported {counts}")


if __name__ == "__main__":
    app()
