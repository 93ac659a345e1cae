"""`loopline plan`'s quick start (loopline/cli_plan.py): a plain call plans before the rest
of the command line loads; anything else gets the full command line's answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopline.cli_plan import _arguments

LOOPLINE = [sys.executable, "-m", "loopline.cli"]
ROOT = Path(__file__).resolve().parents[1]
PROBLEM = {
    "start": "2026-12-01T00:00:00Z",
    "lines": [{"id": "L1", "rates": {"P1": 10.0}}, {"id": "L2", "rates": {"P1": 5.0}}],
    "jobs": [
        {"id": f"J{i}", "product": "P1", "qty": 10.0 * (i + 1), "due": "2026-12-01T06:00:00Z"}
        for i in range(6)
    ],
}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["plan", "--input", "p.json"], {"input": "p.json"}),
        (["plan", "-i", "p.json", "--seed", "3", "--seed", "4"], {"input": "p.json", "seed": "4"}),
        (["plan", "--input=p.json", "--time-limit=0.5"], {"input": "p.json", "time_limit": "0.5"}),
        (["plan", "--rounds", "5", "-i", "p.json"], {"input": "p.json", "rounds": "5"}),
        (["plan", "--input", "p.json", "--help"], None),
        (["plan", "--input"], None),
        (["plan", "--rounds", "5"], None),
        (["plan", "--input", "p.json", "--verbose"], None),
        (["plan", "-i=p.json"], None),
        (["serve"], None),
        ([], None),
    ],
)
def test_only_a_plain_plan_call_takes_the_quick_start(
    argv: list[str], expected: dict[str, str] | None
) -> None:
    assert _arguments(argv) == expected


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOOPLINE, *args], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )


def test_the_quick_start_prints_what_the_full_command_line_prints(tmp_path: Path) -> None:
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(PROBLEM))
    quick = run("plan", "--input", str(path), "--rounds", "20", "--seed", "2")
    full = subprocess.run(
        [sys.executable, "-c", "import sys; from loopline.cli import app; app()",
         "plan", "--input", str(path), "--rounds", "20", "--seed", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert quick.returncode == full.returncode == 0, quick.stderr + full.stderr
    assert quick.stdout == full.stdout
    assert {a["job"] for a in json.loads(quick.stdout)["assignments"]} == {
        j["id"] for j in PROBLEM["jobs"]
    }


def test_what_the_quick_start_cannot_take_gets_the_full_command_lines_answer(
    tmp_path: Path,
) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    done = run("plan", "--input", str(bad_json))
    assert done.returncode == 2 and "not JSON" in done.stderr

    bad_problem = tmp_path / "problem.json"
    bad_problem.write_text(json.dumps({**PROBLEM, "jobs": [{"id": "J1", "qty": -1}]}))
    done = run("plan", "--input", str(bad_problem))
    assert done.returncode == 2 and "invalid problem" in done.stderr and "jobs" in done.stderr

    done = run("plan", "--input", str(bad_problem), "--rounds", "many")
    assert done.returncode == 2 and "--rounds" in done.stderr

    done = run("plan", "--help")
    assert done.returncode == 0 and "--time-limit" in done.stdout
    assert not (tmp_path / "missing.json").exists()
    done = run("plan", "--input", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "cannot read" in done.stderr
