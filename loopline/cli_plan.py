"""``loopline plan`` without the rest of the command line: a plan's time limit counts from
the process start, and loading typer, pydantic and rich took about 0.15 s of it.

``main`` (the ``loopline`` command) and ``python -m loopline.cli`` first offer the
arguments to ``plan_fast``. It takes only a plain ``plan`` call (``--input``/``-i``,
``--time-limit``, ``--rounds``, ``--seed``, each once or repeated, last one wins, as the
full command line parses them) on a file that reads and checks: it prints the same JSON
and exits 0. Anything else (help, a bad option or value, a file that cannot be read, a
problem with issues) goes to the full command line, which answers as it always did, so
every error message has one source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Input files nest a few levels (factory -> lines -> calendar -> shifts -> days); deeper
# is no file of ours, and would exhaust the recursion of the decoder and validators.
MAX_FILE_DEPTH = 32

_OPTIONS = {"--input": "input", "-i": "input", "--time-limit": "time_limit",
            "--rounds": "rounds", "--seed": "seed"}  # fmt: skip


def depth(data: object) -> int:
    """How deeply lists and objects nest in ``data`` (without recursion)."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_FILE_DEPTH:
                children = value.values() if isinstance(value, dict) else value
                stack.extend((child, level + 1) for child in children)
    return deepest


def _arguments(argv: list[str]) -> dict[str, str] | None:
    """The plan command's options as given, or None when anything else is in ``argv``."""
    if not argv or argv[0] != "plan":
        return None
    given: dict[str, str] = {}
    rest = argv[1:]
    k = 0
    while k < len(rest):
        arg = rest[k]
        name, eq, value = arg.partition("=")
        if name not in _OPTIONS or (eq and name == "-i"):
            return None
        if not eq:
            if k + 1 >= len(rest) or rest[k + 1].startswith("-"):
                return None  # a missing or odd-looking value: the full parser says why
            value = rest[k + 1]
            k += 1
        given[_OPTIONS[name]] = value
        k += 1
    return given if "input" in given else None


def _read(path: Path) -> Any:
    """The JSON document in ``path``, or None when the full command line must say why."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if depth(data) <= MAX_FILE_DEPTH else None


def plan_fast(argv: list[str]) -> bool:
    """Plan and print when ``argv`` is a plain ``plan`` call on a good problem file; False
    (nothing printed, nothing solved) when the full command line must handle it."""
    given = _arguments(argv)
    if given is None:
        return False
    try:
        time_limit = float(given["time_limit"]) if "time_limit" in given else None
        rounds = int(given["rounds"]) if "rounds" in given else None
        seed = int(given.get("seed", "0"))
    except ValueError:
        return False
    data = _read(Path(given["input"]))
    if data is None:
        return False
    from loopline.models.planning.problem import ProblemError, parse_problem
    from loopline.models.planning.schedule import to_json
    from loopline.models.planning.solver import solve

    try:
        problem = parse_problem(data)
    except ProblemError:
        return False
    try:
        schedule = solve(problem, time_limit=time_limit, max_rounds=rounds, seed=seed)
    except ProblemError:  # found by the solver's own check: the full command line says it
        return False
    sys.stdout.write(json.dumps(to_json(schedule), indent=2) + "\n")
    return True


def main() -> None:
    """The ``loopline`` command."""
    if plan_fast(sys.argv[1:]):
        return
    from loopline.cli import app

    app()
