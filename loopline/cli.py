"""The ``loopline`` command line (DESIGN.md, "Command line")."""

from __future__ import annotations

import sys

from loopline.cli_plan import MAX_FILE_DEPTH, plan_fast
from loopline.cli_plan import depth as _depth

# A plain `plan` call answers before the rest of the command line loads (cli_plan.py).
if __name__ == "__main__" and plan_fast(sys.argv[1:]):
    sys.exit(0)

import json
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from loopline.ingest.devices import DeviceFiles
    from loopline.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Loopline: the live link between a CRM and the production lines.",
)
console = Console(stderr=True)


def _read_json(path: Path) -> object:
    """The JSON document in ``path``; prints why and exits 2 when there is none."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        _refuse(f"cannot read {path}: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _refuse(f"cannot read {path}: not UTF-8 (byte {exc.start}: {exc.reason})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _refuse(f"cannot read {path}: not JSON: {exc}")
    except RecursionError:
        _refuse(f"cannot read {path}: nested deeper than {MAX_FILE_DEPTH} levels")
    if _depth(data) > MAX_FILE_DEPTH:
        _refuse(f"cannot read {path}: nested deeper than {MAX_FILE_DEPTH} levels")
    return data


def _refuse(message: str, issues: list[str] | None = None) -> NoReturn:
    """Print what is wrong (every issue on its own line) and exit with code 2."""
    console.print(f"[red]{escape(message)}[/]", soft_wrap=True)
    for issue in issues or []:
        console.print(f"  {escape(issue)}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _logging(verbose: bool) -> None:
    # Rich's handler renders a table per line: pleasant on a terminal, but under systemd,
    # docker or a log file a service at a few hundred requests a second spent a tenth of
    # its CPU drawing access-log lines no one sees in colour. Plain lines there.
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=fmt, handlers=[handler]
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
    from loopline.runtime import tune_gc
    from loopline.settings import Settings

    running = start_demo(Settings(), host=host, port=port, mqtt_port=mqtt_port, speed=speed)
    tune_gc()
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

    from loopline.runtime import build_app, build_runtime, tune_gc
    from loopline.settings import Settings

    rt = build_runtime(Settings(), demo=False)
    served = build_app(rt)
    tune_gc()
    uvicorn.run(served, host=host, port=port, log_level="info", ws="websockets-sansio")


@app.command()
def ingest(
    verbose: bool = False,
    sparkplug: Annotated[
        Path | None,
        typer.Option(
            "--sparkplug",
            help="A Sparkplug B mapping file (docs/sparkplug.md); also LOOPLINE_SPARKPLUG_MAPPING",
        ),
    ] = None,
) -> None:
    """Consume shop-floor MQTT (and Sparkplug B, with a mapping file) into the live state."""
    _logging(verbose)
    from loopline.ingest.sparkplug.mapping import MappingFileError, load_mapping
    from loopline.runtime import build_consumer, build_runtime, build_sparkplug, tune_gc
    from loopline.settings import Settings

    settings = Settings()
    path = sparkplug or settings.sparkplug_mapping
    try:
        mapping = load_mapping(path) if path is not None else None
    except MappingFileError as exc:
        console.print(f"[red]Sparkplug mapping {escape(exc.path)} is not usable:[/red]")
        for problem in exc.problems:
            console.print(f"  {escape(problem)}")
        raise typer.Exit(2) from None
    rt = build_runtime(settings, demo=False)
    if not rt.resolved.mqtt_url:
        raise SystemExit("LOOPLINE_MQTT_URL is required for `loopline ingest`")
    lock = threading.Lock()
    spb = build_sparkplug(rt, rt.resolved.mqtt_url, mapping, lock=lock) if mapping else None
    consumer = build_consumer(rt, rt.resolved.mqtt_url, lock=lock if spb else None)
    consumer.start()
    if spb is not None:
        spb.start()
    tune_gc()
    try:
        _wait_for_signal()
    finally:
        if spb is not None:
            spb.stop()
        consumer.stop()
        rt.close()


@app.command()
def worker(verbose: bool = False) -> None:
    """Replan on order changes, evaluate alerts, and relay feedback to the CRM."""
    _logging(verbose)
    from loopline.models.loop import request_replan
    from loopline.runtime import (
        build_loop,
        build_notifier,
        build_reconciler,
        build_runtime,
        build_status_watcher,
        tune_gc,
    )
    from loopline.settings import Settings

    rt = build_runtime(Settings(), demo=False)
    loop = build_loop(rt)
    # The periodic CRM pull that repairs missed webhooks (LOOPLINE_RECONCILE_SOURCES).
    reconciler = build_reconciler(rt)
    # Notifications and escalation timers (LOOPLINE_NOTIFY_RULES; None when unset).
    notifier = build_notifier(rt)
    # A dead ingest (its Will says offline) is an alert; the worker is who watches.
    watcher = build_status_watcher(rt, rt.resolved.mqtt_url) if rt.resolved.mqtt_url else None
    if not rt.live.ids("line"):
        from loopline.models.replan import sync_live

        with rt.sessions() as session:
            sync_live(session, rt.live, now=rt.clock.now(), rebuild=True)
    request_replan(rt.live.redis, "worker start")
    loop.start()
    if watcher is not None:
        watcher.start()
    if notifier is not None:
        notifier.start()
    if reconciler is not None:
        reconciler.start()
    tune_gc()
    try:
        _wait_for_signal()
    finally:
        if reconciler is not None:
            reconciler.stop()
        if notifier is not None:
            notifier.stop()
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
    from loopline.models.planning import ProblemError, plan_json

    data = _read_json(input)
    try:
        result = plan_json(data, time_limit=time_limit, max_rounds=rounds, seed=seed)
    except ProblemError as exc:
        _refuse(
            f"invalid problem {input}: {len(exc.errors)} issue(s)", [str(e) for e in exc.errors]
        )
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


@app.command("rebuild-state")
def rebuild_state() -> None:
    """Restore the live state in Redis from SQL (after a Redis loss)."""
    _logging(False)
    from loopline.models.replan import sync_live
    from loopline.runtime import build_runtime
    from loopline.settings import Settings

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
    from loopline.ingest.factory_file import FactoryFileError, import_factory, parse_factory
    from loopline.models.db import make_sessions, transaction
    from loopline.runtime import open_database
    from loopline.settings import Settings

    def refuse(exc: FactoryFileError) -> NoReturn:
        issues = [f"{e['field']}: {e['message']}" for e in exc.errors]
        _refuse(f"invalid factory file {file}: {len(issues)} issue(s)", issues)

    data = _read_json(file)
    try:
        factory = parse_factory(data)
    except FactoryFileError as exc:
        refuse(exc)
    engine = open_database(Settings())
    try:
        with transaction(make_sessions(engine)) as session:
            counts = import_factory(session, factory, actor="cli")
    except FactoryFileError as exc:  # names the database does not know either
        refuse(exc)
    finally:
        engine.dispose()
    console.print(f"imported {counts}")


sessions_app = typer.Typer(no_args_is_help=True, help="Signed-in browsers: list or sign out.")
app.add_typer(sessions_app, name="sessions")


@sessions_app.command("list")
def sessions_list() -> None:
    """List the browser sessions still valid."""
    _logging(False)
    from loopline.models.clock import utcnow
    from loopline.models.db import make_sessions
    from loopline.models.web_sessions import listing
    from loopline.runtime import open_database
    from loopline.settings import Settings

    engine = open_database(Settings())
    try:
        with make_sessions(engine)() as session:
            rows = listing(session, now=utcnow())
    finally:
        engine.dispose()
    for r in rows:
        sys.stdout.write(
            f"{r.id}  {r.role:<18} last seen {r.last_seen_at:%Y-%m-%d %H:%M}Z"
            f"  ends {r.expires_at:%Y-%m-%d %H:%M}Z  {r.user_agent or ''}\n"
        )


@sessions_app.command("revoke")
def sessions_revoke(
    session_id: Annotated[str | None, typer.Argument(help="The id `sessions list` shows")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every session (of --role)")] = False,
    role: Annotated[str | None, typer.Option(help="With --all: only this role's")] = None,
) -> None:
    """Sign browsers out: one session by id, or all of them (running servers notice
    within a few seconds)."""
    _logging(False)
    from loopline.models.clock import utcnow
    from loopline.models.db import make_sessions, transaction
    from loopline.models.web_sessions import revoke, revoke_all
    from loopline.runtime import open_database
    from loopline.settings import Settings

    if (session_id is None) == (not all_):
        console.print("[red]give a session id or --all[/]")
        raise typer.Exit(2)
    engine = open_database(Settings())
    try:
        with transaction(make_sessions(engine)) as session:
            if all_:
                count = revoke_all(session, now=utcnow(), role=role)
            else:
                count = int(revoke(session, sid=session_id or "", now=utcnow()))
    finally:
        engine.dispose()
    console.print(f"revoked {count} session{'s' if count != 1 else ''}")
    if session_id is not None and not count:
        raise typer.Exit(1)


users_app = typer.Typer(no_args_is_help=True, help="People: add, list, disable; their API keys.")
app.add_typer(users_app, name="users")
keys_app = typer.Typer(no_args_is_help=True, help="Personal API keys: create, list, revoke.")
users_app.add_typer(keys_app, name="keys")


def _records() -> Engine:
    """The system of record, migrated, without loading the server (a person at a terminal
    waits for these commands)."""
    from loopline.models.db import make_engine, migrate
    from loopline.settings import Settings, resolve

    settings = Settings()
    engine = make_engine(settings.database_url or resolve(settings, demo=True).database_url)
    migrate(engine)
    return engine


def _cli_actor() -> str:
    """Who a people command acts as, for the audit: the account at the terminal."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _read_password(stdin: bool, prompt: bool) -> str | None:
    """The password to set: the first line of stdin, asked for, or none."""
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if prompt:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return None


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="The sign-in name, e.g. li.na")],
    name: Annotated[str, typer.Option(help="The person's full name")],
    role: Annotated[
        list[str],
        typer.Option(
            help="A role (repeatable): admin, display, production_manager, purchasing, sales"
        ),
    ],
    lang: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    customer: Annotated[
        list[str] | None, typer.Option(help="Sales: a customer id they own (repeatable)")
    ] = None,
    rep: Annotated[
        list[str] | None, typer.Option(help="Sales: a CRM rep name whose orders they own")
    ] = None,
    email: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
    ask_password: Annotated[bool, typer.Option("--password", help="Ask for a password")] = False,
) -> None:
    """Add a user (a person who signs in with a password, SSO or a personal API key)."""
    _logging(False)
    from loopline.models.db import make_sessions, transaction
    from loopline.models.users import UserError, add_user

    password = _read_password(password_stdin, ask_password)
    engine = _records()
    try:
        with transaction(make_sessions(engine)) as session:
            user = add_user(
                session,
                username=username,
                name=name,
                roles=role,
                lang=lang,
                customers=customer or [],
                reps=rep or [],
                email=email,
                password=password,
                actor=_cli_actor(),
            )
            console.print(f"added user {user.username} ({', '.join(user.roles)})")
    except UserError as exc:
        _refuse(f"cannot add user {username}", [str(exc)])
    finally:
        engine.dispose()


@users_app.command("list")
def users_list() -> None:
    """List users: roles, language, scope, and whether they are disabled."""
    _logging(False)
    from loopline.models.db import make_sessions
    from loopline.models.users import list_users

    engine = _records()
    try:
        with make_sessions(engine)() as session:
            for u in list_users(session):
                scope = ",".join([*u.customers, *(f"rep:{r}" for r in u.reps)]) or "-"
                state = f"disabled {u.disabled_at:%Y-%m-%d}" if u.disabled_at else "active"
                sys.stdout.write(
                    f"{u.username:<20} {u.name:<24} {','.join(u.roles):<28} {u.lang:<6}"
                    f" {scope:<30} {state}\n"
                )
    finally:
        engine.dispose()


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument()]) -> None:
    """Disable a user: their sessions end and their API keys stop working."""
    _logging(False)
    from loopline.models.db import make_sessions, transaction
    from loopline.models.users import disable_user

    engine = _records()
    try:
        with transaction(make_sessions(engine)) as session:
            user = disable_user(session, username=username, actor=_cli_actor())
    finally:
        engine.dispose()
    if user is None:
        _refuse(f"no user '{username}'")
    console.print(f"disabled {username}")


@users_app.command("set")
def users_set(
    username: Annotated[str, typer.Argument()],
    name: Annotated[str | None, typer.Option(help="A new full name")] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="The roles (repeatable; replaces the old ones)")
    ] = None,
    lang: Annotated[str | None, typer.Option(help="en or zh-CN")] = None,
    customer: Annotated[
        list[str] | None, typer.Option(help="The customers they own (replaces; repeatable)")
    ] = None,
    rep: Annotated[list[str] | None, typer.Option(help="The CRM reps they own (replaces)")] = None,
    no_customers: Annotated[bool, typer.Option("--no-customers", help="Own no customer")] = False,
    no_reps: Annotated[bool, typer.Option("--no-reps", help="Own no rep")] = False,
    email: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a user's name, roles, language, scope or e-mail (their sessions end when
    their roles or scope change)."""
    _logging(False)
    from loopline.models.db import make_sessions, transaction
    from loopline.models.users import UserError, update_user

    engine = _records()
    try:
        with transaction(make_sessions(engine)) as session:
            user = update_user(
                session,
                username=username,
                actor=_cli_actor(),
                name=name,
                roles=role or None,
                lang=lang,
                customers=[] if no_customers else (customer or None),
                reps=[] if no_reps else (rep or None),
                email=email,
            )
    except UserError as exc:
        _refuse(f"cannot change user {username}", [str(exc)])
    finally:
        engine.dispose()
    if user is None:
        _refuse(f"no user '{username}'")
    console.print(f"changed {username}")


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
) -> None:
    """Set a user's password (their other sessions end)."""
    _logging(False)
    from loopline.models.db import make_sessions, transaction
    from loopline.models.users import UserError, get_user, set_password

    password = _read_password(password_stdin, not password_stdin) or ""
    engine = _records()
    try:
        with transaction(make_sessions(engine)) as session:
            user = get_user(session, username=username)
            if user is None:
                _refuse(f"no user '{username}'")
            set_password(session, user=user, password=password, actor=_cli_actor())
    except UserError as exc:
        _refuse(f"cannot set the password of {username}", [str(exc)])
    finally:
        engine.dispose()
    console.print(f"password of {username} set")


@keys_app.command("add")
def keys_add(
    username: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'excel export'")],
) -> None:
    """Create a personal API key; it is printed once (stdout), stored only hashed."""
    _logging(False)
    from loopline.models.db import make_sessions, transaction
    from loopline.models.users import UserError, create_key, get_user

    engine = _records()
    try:
        with transaction(make_sessions(engine)) as session:
            user = get_user(session, username=username)
            if user is None or not user.active:
                _refuse(f"no active user '{username}'")
            key, row = create_key(session, user=user, name=name, actor=_cli_actor())
    except UserError as exc:
        _refuse("cannot create the key", [str(exc)])
    finally:
        engine.dispose()
    console.print(f"key {row.id} for {username}; keep it, it is not shown again:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(
    username: Annotated[str | None, typer.Argument(help="Only this user's")] = None,
) -> None:
    """List API keys with when each was last used (never the keys)."""
    _logging(False)
    from loopline.models.db import make_sessions
    from loopline.models.users import get_user, list_keys

    engine = _records()
    try:
        with make_sessions(engine)() as session:
            user = get_user(session, username=username) if username else None
            if username and user is None:
                _refuse(f"no user '{username}'")
            for k in list_keys(session, user=user):
                used = f"{k.last_used_at:%Y-%m-%d %H:%M}Z" if k.last_used_at else "never"
                state = "revoked" if k.revoked_at else "active"
                sys.stdout.write(
                    f"{k.id}  {k.user.username:<20} {k.name:<24} last used {used:<18} {state}\n"
                )
    finally:
        engine.dispose()


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The id `users keys list` shows")],
) -> None:
    """Revoke an API key (running servers notice within a few seconds)."""
    _logging(False)
    from loopline.models.db import make_sessions, transaction
    from loopline.models.users import revoke_key

    engine = _records()
    try:
        with transaction(make_sessions(engine)) as session:
            row = revoke_key(session, key_id=key_id, actor=_cli_actor())
    finally:
        engine.dispose()
    if row is None:
        _refuse(f"no active key '{key_id}'")
    console.print(f"revoked key {key_id}")


notify_app = typer.Typer(no_args_is_help=True, help="Notification rules and channels.")
app.add_typer(notify_app, name="notify")


def _rules_or_refuse(file: Path | None) -> tuple[Path, object]:
    from loopline.models.notify_rules import RulesFileError, load_rules
    from loopline.settings import Settings

    path = file or Settings().notify_rules
    if path is None:
        _refuse("give a rules file or set LOOPLINE_NOTIFY_RULES")
    try:
        return path, load_rules(path)
    except RulesFileError as exc:
        _refuse(f"invalid rules file {path}: {len(exc.errors)} issue(s)", exc.errors)


@notify_app.command("check")
def notify_check(
    file: Annotated[
        Path | None, typer.Argument(help="Rules file (default: LOOPLINE_NOTIFY_RULES)")
    ] = None,
) -> None:
    """Validate a rules file; print what it sets up, or every problem with its field."""
    from loopline.models.notify_rules import NotifyConfig

    path, config = _rules_or_refuse(file)
    assert isinstance(config, NotifyConfig)
    channels = ", ".join(f"{n} ({c.type})" for n, c in config.channels.items()) or "none"
    console.print(f"{path}: valid", highlight=False)
    for warning in config.warnings():
        console.print(f"  [yellow]warning: {escape(warning)}[/]", soft_wrap=True)
    console.print(f"  channels: inbox, {channels}", highlight=False, soft_wrap=True)
    console.print(f"  people: {len(config.people)}", highlight=False)
    for rule in config.rules:
        console.print(
            f"  rule {rule.name}: {rule.event} -> {', '.join(rule.to)} via {', '.join(rule.via)}",
            highlight=False,
            soft_wrap=True,
        )
    for pol in config.escalation:
        chain = " -> ".join("+".join(level) for level in pol.levels)
        console.print(
            f"  escalation {pol.severity}: every {pol.ack_within_min:g} min {chain}",
            highlight=False,
            soft_wrap=True,
        )


@notify_app.command("test")
def notify_test(
    channel: Annotated[str, typer.Argument(help="A channel's name in the rules file")],
    to: Annotated[str, typer.Option(help="E-mail channels: the address to write to")] = "",
    file: Annotated[Path | None, typer.Option("--rules", help="Rules file")] = None,
) -> None:
    """Send one test message on a channel now (not queued), and say what it answered."""
    import httpx

    from loopline.models.channels import Item, SendError, send
    from loopline.models.clock import utcnow
    from loopline.models.notify_rules import NotifyConfig

    _, config = _rules_or_refuse(file)
    assert isinstance(config, NotifyConfig)
    found = config.channel(channel)
    if found is None:
        _refuse(f"no channel {channel!r} (known: {', '.join(config.channels) or 'none'})")
    if found.type == "email" and not to:
        _refuse("an e-mail channel needs --to ADDRESS")
    now = utcnow()
    item = Item(
        id=0,
        title="Loopline test message",
        body=f"Channel {channel} works ({now:%Y-%m-%d %H:%M} UTC).",
        severity="info",
        event="test",
        created_at=now,
    )
    try:
        with httpx.Client() as client:
            send(found, [item], message_id=f"ntf_test_{int(now.timestamp())}", address=to,
                 client=client, now=now)  # fmt: skip
    except SendError as exc:
        console.print(f"[red]{escape(channel)}: not delivered: {escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    console.print(f"{channel}: delivered")


@notify_app.command("requeue")
def notify_requeue(
    channel: Annotated[str | None, typer.Option(help="Only this channel's")] = None,
) -> None:
    """Give dead notifications fresh attempts (once their channel works again)."""
    _logging(False)
    from loopline.models.clock import utcnow
    from loopline.models.db import make_sessions, transaction
    from loopline.models.notify_relay import requeue_dead
    from loopline.runtime import open_database
    from loopline.settings import Settings

    engine = open_database(Settings())
    try:
        with transaction(make_sessions(engine)) as session:
            count = requeue_dead(session, channel=channel, now=utcnow())
    finally:
        engine.dispose()
    console.print(f"requeued {count} notification{'s' if count != 1 else ''}")


from loopline.cli_connectors import connectors_app, import_orders, reconcile_cmd  # noqa: E402

app.add_typer(connectors_app, name="connectors")
app.command("import-orders")(import_orders)
app.command("reconcile")(reconcile_cmd)
devices_app = typer.Typer(
    no_args_is_help=True,
    help="Per-line broker accounts (Mosquitto password and ACL files): add, list, remove.",
)
app.add_typer(devices_app, name="devices")


def _device_files(settings: Settings) -> DeviceFiles:
    """The broker's files from the settings; refuses (exit 2) when they are not set."""
    from loopline.ingest.devices import DeviceFiles

    if settings.mqtt_password_file is None or settings.mqtt_acl_file is None:
        _refuse(
            "set LOOPLINE_MQTT_PASSWORD_FILE and LOOPLINE_MQTT_ACL_FILE to the files named by"
            " Mosquitto's password_file and acl_file"
        )
    return DeviceFiles(settings.mqtt_password_file, settings.mqtt_acl_file)


def _reload_broker(settings: Settings) -> None:
    """SIGHUP Mosquitto when its pid file is configured; otherwise say how to."""
    from loopline.ingest.devices import DeviceError, reload_broker

    if settings.mqtt_pid_file is None:
        console.print(
            "reload Mosquitto for this to take effect: `systemctl reload mosquitto` or"
            " `kill -HUP <its pid>` (set LOOPLINE_MQTT_PID_FILE to its pid_file and Loopline"
            " does it)",
            soft_wrap=True,
        )
        return
    try:
        pid = reload_broker(settings.mqtt_pid_file)
    except DeviceError as exc:
        console.print(f"[red]the files are written, but {escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"reloaded Mosquitto (SIGHUP to pid {pid})")


def _known_lines(settings: Settings) -> dict[str, str]:
    """``{line id: site id}`` of every line in the database (read only, no migration)."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from loopline.models.db import make_engine
    from loopline.models.records import Line
    from loopline.settings import resolve

    # Why not runtime.open_database: importing the runtime takes seconds, and a read
    # needs no migration.
    engine = make_engine(settings.database_url or resolve(settings, demo=True).database_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(Line.id, Line.site_id)).tuples().all())
    except SQLAlchemyError as exc:
        _refuse(
            f"cannot read the lines from the database ({type(exc).__name__}); run"
            " `loopline migrate` and `loopline import-factory` first"
        )
    finally:
        engine.dispose()


@devices_app.command("add")
def devices_add(
    line: Annotated[str, typer.Argument(help="The line's id, e.g. L3")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Give a line that has an account a new password")
    ] = False,
) -> None:
    """Create the line's broker account: it may publish only to loopline/v1/{site}/{line}/#.

    Prints the generated password once (only its hash is kept). Also gives the ingest's
    account (the user in LOOPLINE_MQTT_URL) read on every topic.
    """
    _logging(False)
    from loopline.ingest.devices import DeviceError, line_topic
    from loopline.ingest.mqtt.url import parse_mqtt_url
    from loopline.settings import Settings

    settings = Settings()
    files = _device_files(settings)
    lines = _known_lines(settings)
    if line not in lines:
        known = ", ".join(sorted(lines)) or "none; import them with `loopline import-factory`"
        _refuse(f"unknown line {line!r} (known lines: {known})")
    try:
        ingest = parse_mqtt_url(settings.mqtt_url or "")
    except ValueError as exc:
        _refuse(f"LOOPLINE_MQTT_URL: {exc}")
    if not ingest.username:
        _refuse(
            "LOOPLINE_MQTT_URL must name the ingest's account (mqtt://USER:PASSWORD@host:1883):"
            " once lines have accounts, the broker admits no anonymous client"
        )
    try:
        files.ensure_ingest(username=ingest.username, password=ingest.password)
        password = files.add_line(line=line, site=lines[line], rotate=rotate)
    except DeviceError as exc:
        _refuse(str(exc))
    sys.stdout.write(
        f"line:     {line}\nusername: {line}\npassword: {password}\n"
        f"publish:  {line_topic(lines[line], line)}\n"
    )
    console.print("the password is shown this once; Loopline keeps only its hash")
    _reload_broker(settings)


@devices_app.command("list")
def devices_list() -> None:
    """List the broker accounts Loopline made, and the lines that have none yet."""
    _logging(False)
    from loopline.ingest.devices import DeviceError
    from loopline.settings import Settings

    settings = Settings()
    files = _device_files(settings)
    try:
        accounts = files.accounts()
    except DeviceError as exc:
        _refuse(str(exc))
    lines = _known_lines(settings)
    for a in accounts:
        grants = [f"write {t}" for t in a.writes] + [f"read {t}" for t in a.reads]
        note = "" if a.has_password else "  (no password: cannot sign in)"
        if a.role == "line" and a.username not in lines:
            note += "  (no such line in the database)"
        sys.stdout.write(f"{a.username:<16} {a.role:<7} {', '.join(grants)}{note}\n")
    missing = sorted(set(lines) - {a.username for a in accounts})
    for line in missing:
        sys.stdout.write(f"{line:<16} line    no account (`loopline devices add {line}`)\n")


@devices_app.command("remove")
def devices_remove(line: Annotated[str, typer.Argument(help="The line's id, e.g. L3")]) -> None:
    """Delete the line's broker account and its ACL entry."""
    _logging(False)
    from loopline.ingest.devices import DeviceError
    from loopline.settings import Settings

    settings = Settings()
    files = _device_files(settings)
    try:
        files.remove_line(line)
    except DeviceError as exc:
        _refuse(str(exc))
    console.print(f"removed the broker account of line {line}")
    _reload_broker(settings)


if __name__ == "__main__":
    app()
