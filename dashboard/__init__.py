"""The Dash screens: wall, board, orders lookup and alerts, pushed live from the live state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.dashboard.app import create_dash as create_dash

__all__ = ["create_dash"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `import dashboard.i18n` (tests, the CLI) does not load Dash.
    if name == "create_dash":
        from loopline.dashboard.app import create_dash

        return create_dash
    raise AttributeError(name)
