"""The built wheel installs Loopline under its own name and runs without the repository.

The repository keeps ``models/ api/ ingest/ dashboard/ assets/`` at its root; the wheel must put
them inside ``loopline`` (no generic top-level ``models`` in site-packages) with the assets and
migrations they read at run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"loopline": "loopline", "models": "loopline/models", "api": "loopline/api"}
FOLDERS |= {"ingest": "loopline/ingest", "dashboard": "loopline/dashboard"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # setuptools writes build/ and *.egg-info beside the sources: build from a copy.
    source = build / "src"
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "test-artifacts", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(out), str(source)],
        check=True,
        env={**os.environ, "TMPDIR": str(build)},
        timeout=240,
    )
    (found,) = out.glob("loopline-*.whl")
    return found


def test_wheel_holds_every_package_under_the_loopline_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"loopline"}, tops
    for folder, installed in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).as_posix()
            assert f"{installed}/{rel}" in names, f"{folder}/{rel} is not in the wheel"
    assets = {p.name for p in (ROOT / "assets").iterdir() if p.is_file()}
    assert assets and all(f"loopline/assets/{a}" in names for a in assets)
    versions = [p.name for p in (ROOT / "models/migrations/versions").glob("*.py")]
    assert all(f"loopline/models/migrations/versions/{v}" in names for v in versions)
    assert "loopline/models/migrations/env.py" in names
    shipped = [p.name for p in (ROOT / "ingest/crm/connectors").glob("*.yaml")]
    assert shipped and all(f"loopline/ingest/crm/connectors/{c}" in names for c in shipped)


def test_installed_wheel_migrates_and_serves_its_assets(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
        + [str(wheel)],
        check=True,
        timeout=240,
    )
    probe = """
import loopline, loopline.models.db as db, loopline.dashboard.app as dash_app
from sqlalchemy import inspect
assert loopline.__file__.startswith(SITE), loopline.__file__
assert db.__file__.startswith(SITE), db.__file__
engine = db.make_engine("sqlite:///" + DB)
db.migrate(engine)
assert {"site", "line", "sales_order"} <= set(inspect(engine).get_table_names())
assert (dash_app.ASSETS / "loopline.css").is_file(), dash_app.ASSETS
assert str(dash_app.ASSETS).startswith(SITE), dash_app.ASSETS
import importlib.util
assert importlib.util.find_spec("models") is None
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env["PYTHONPATH"] = str(site)
    prelude = f"SITE = {str(site)!r}; DB = {str(tmp_path / 'x.db')!r}\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
