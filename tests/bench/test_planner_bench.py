"""The planner bench runs from the repository alone: its OR-Library data is vendored."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "bench" / "data" / "orlib-wt"


def test_vendored_orlib_data_matches_its_checksums_and_has_a_licence() -> None:
    assert (DATA / "LICENSE").is_file() and (DATA / "SOURCE.md").is_file()
    lines = (DATA / "SHA256SUMS").read_text().split("\n")
    sums = dict(reversed(line.split()) for line in lines if line.strip())
    for name in ("wt40.txt", "wt50.txt", "wt100.txt", "wtopt40.txt", "wtopt50.txt"):
        digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
        assert sums[name] == digest, name
    assert "wtbest100b.txt" in sums


def test_bench_planner_set_all_runs_without_anything_beside_the_repository(tmp_path) -> None:
    # A copy of the repository's bench and models in a folder with no ../shared next to it.
    clone = tmp_path / "repo"
    clone.mkdir()
    for part in ("bench", "models", "loopline"):
        subprocess.run(["cp", "-r", str(REPO / part), str(clone / part)], check=True)
    assert not (tmp_path / "shared").exists()
    env = {**os.environ, "PYTHONPATH": str(clone)}
    result = subprocess.run(
        [sys.executable, str(clone / "bench" / "planner.py"), "--set", "all", "--instances", "2",
         "--time-limit", "0.05", "--no-cpsat"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("wt40", "wt50", "wt100"):
        assert name in result.stdout
