"""``loopline demo`` in this process: ready at once (the planner compiles in the background),
screens and a first plan served, and the banner's MQTT example is right as printed."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select

from loopline.demo import free_port, print_banner, start_demo
from loopline.models.planning import backend
from loopline.models.records import Alert
from loopline.settings import Settings

# Seconds from launch to the banner with nothing compiled (measured: about 6 s idle; the
# compile alone used to take 60-100 s on these 2 cores).
COLD_READY_S = 45.0


@pytest.fixture
def taken_port():
    """A port something else already listens on (as 1883 often is)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def demo(tmp_path, taken_port):
    started = time.monotonic()
    running = start_demo(
        Settings(data_dir=tmp_path), port=free_port(), mqtt_port=taken_port, speed=60.0
    )
    running.ready_after_s = time.monotonic() - started
    yield running
    running.stop()


def banner(demo) -> str:
    out = io.StringIO()
    print_banner(demo, Console(file=out, width=400, soft_wrap=True))
    return out.getvalue()


def test_demo_is_ready_with_screens_and_a_first_plan_before_the_planner_compiles(demo):
    # The compile runs in a child process; start_demo did not wait for it.
    assert demo.planner_compile is not None
    assert demo.ready_after_s < 30
    token = demo.runtime.resolved.api_token
    text = banner(demo)
    assert "Loopline demo is ready" in text
    wall = re.search(r"Wall screen\s+(\S+)", text).group(1)
    assert httpx.get(wall, follow_redirects=True).status_code == 200
    plan = httpx.get(f"{demo.url}/api/v1/plan", headers={"Authorization": f"Bearer {token}"})
    assert plan.status_code == 200 and plan.json()["assignments"]
    # Weeks of history were backfilled: every delivery KPI has a trend from the start.
    kpi = httpx.get(f"{demo.url}/api/v1/kpi", headers={"Authorization": f"Bearer {token}"})
    assert kpi.status_code == 200
    on_time = next(k for k in kpi.json()["kpis"] if k["key"] == "on_time_delivery")
    assert sum(p["value"] is not None for p in on_time["trend"]) >= 6
    kpi_screen = re.search(r"KPIs\s+(\S+)", text).group(1)
    assert httpx.get(kpi_screen, follow_redirects=True).status_code == 200
    assert demo.planner_compile.done.wait(240) and demo.planner_compile.error is None
    assert backend.compiled_ready()


def test_banner_mosquitto_example_targets_the_real_broker_and_raises_no_gap(demo, taken_port):
    text = banner(demo)
    command = re.search(r"(mosquitto_pub .*)$", text, re.M).group(1)
    port = int(demo.mqtt_url.rsplit(":", 1)[1])
    assert port != taken_port and f"-p {port} " in command
    time.sleep(2.0)  # let the simulated sensors count a while first
    subprocess.run(command, shell=True, check=True, timeout=30)

    def l2():
        return demo.runtime.live.get("line", "L2") or {}

    deadline = time.monotonic() + 15
    while (l2().get("state"), l2().get("reason")) != ("down", "jam"):
        assert time.monotonic() < deadline, l2()
        time.sleep(0.1)
    seq = l2()["seq"]
    deadline = time.monotonic() + 20
    while l2()["seq"] <= seq:  # the simulated sensor goes on counting after it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with demo.runtime.sessions() as s:
        gaps = list(s.scalars(select(Alert).where(Alert.kind == "mqtt_gap")))
    assert gaps == []


def test_demo_from_a_cold_planner_cache_is_ready_without_waiting_for_the_compile(tmp_path):
    """As from a fresh clone: no compiled planner anywhere (an empty numba cache). The demo
    serves its screens and a first plan at once; it used to compile for a minute first."""
    port, mqtt_port = free_port(), free_port()
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
        "LOOPLINE_DATA_DIR": str(tmp_path / "var"),
        "COLUMNS": "400",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopline.cli", "demo", "--port", str(port),
         "--mqtt-port", str(mqtt_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + COLD_READY_S
        while not any("mosquitto_pub" in line for line in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "not ready in time:\n" + "".join(lines)[-3000:]
            time.sleep(0.1)
        text = "".join(lines)
        assert "Loopline demo is ready" in text
        assert "planner compiled" not in text  # it did not wait for the compile
        token = re.search(r"API token\s+(\S+)", text).group(1)
        wall = re.search(r"Wall screen\s+(\S+)", text).group(1)
        assert httpx.get(wall, follow_redirects=True).status_code == 200
        plan = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/plan", headers={"Authorization": f"Bearer {token}"}
        )
        assert plan.status_code == 200 and plan.json()["assignments"]
    finally:
        proc.send_signal(signal.SIGINT)  # stops the demo and its compiling child
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert "stopped" in "".join(lines)
