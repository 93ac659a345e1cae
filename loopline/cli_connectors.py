"""``loopline connectors list|check``: the CRM connector files, and a sample through one."""

from __future__ import annotations

import json
import os
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
            f"{'':<14} {c.title}  POST /api/v1/crm/{name}/events  ({registry.files[name]})\n"
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
