"""Notification burst: how `loopline worker` tells a DingTalk group of many alerts at once.

On real PostgreSQL and Redis, with `loopline worker` as a process reading a rules file, and a
local DingTalk robot that checks the signature and refuses more than 20 messages a minute
(as DingTalk does). Baseline: one alert, from its row in SQL to the robot. Then a burst of
``--alerts`` alerts (sequence gaps on as many lines) opened in one transaction: the time
until every one reached the robot, how many messages carried them, and how many the robot
refused (must be 0).

    python bench/notify.py [--alerts 300]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import Procs, loopline_env, wait_for  # noqa: E402
from loopline.models.alerts import open_alert  # noqa: E402
from loopline.models.clock import utcnow  # noqa: E402
from loopline.models.db import make_engine, make_sessions, migrate, transaction  # noqa: E402
from loopline.settings import new_webhook_secret  # noqa: E402
from tests.robots import Robot, RobotServer  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

ITEM = re.compile(r"Line (B\d+): sequence gap")


def _told(robot: Robot) -> set[str]:
    return {m for body in robot.accepted for m in ITEM.findall(body["markdown"]["text"])}


def _open(sessions, names: list[str]) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        for name in names:
            open_alert(
                s,
                # Not line_down: the worker resolves that at once for lines its live state
                # does not see down. A sequence gap stays open on its own.
                key=f"mqtt_gap:{name}",
                kind="mqtt_gap",
                entity="line",
                entity_id=name,
                severity="warning",
                message=f"Line {name}: sequence gap",
                details={"line": name},
                at=utcnow(),
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=300)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="loopline-bench-notify-"))
    robots = RobotServer()
    ding = Robot("dingtalk", secret="SECbench")
    url = robots.add(ding)
    robots.start()
    rules = workdir / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "channels": {"chat": {"type": "dingtalk", "url": url, "secret": "SECbench"}},
                "people": [{"id": "lead", "roles": ["line_lead"], "mobile": "13800000001"}],
                "rules": [
                    {
                        "name": "gaps",
                        "event": "alert",
                        "kinds": ["mqtt_gap"],
                        "to": ["role:line_lead"],
                        "via": ["chat"],
                    }
                ],
            }
        )
    )
    try:
        with PostgresServer() as pg, RedisServer() as redis_srv:
            engine = make_engine(pg.url)
            migrate(engine)
            sessions = make_sessions(engine)
            env = loopline_env(
                database_url=pg.url,
                redis_url=redis_srv.url,
                mqtt_url=None,
                crm_url=None,
                secret=new_webhook_secret(),
                data_dir=workdir,
                notify_rules=str(rules),
            )
            procs = Procs(env, workdir)
            try:
                procs.start("worker", ["worker"])
                # A first alert waits out the worker's start (migrations, planner warm-up).
                _open(sessions, ["B0"])
                arrived, _ = wait_for(lambda: "B0" in _told(ding), 180, 0.05)
                if not arrived:
                    raise SystemExit("the worker told nothing\n" + procs.log_tail("worker"))
                t0 = time.monotonic()
                _open(sessions, ["B00"])
                arrived, _ = wait_for(lambda: "B00" in _told(ding), 60, 0.01)
                single_s = time.monotonic() - t0
                if not arrived:
                    raise SystemExit(
                        "the first notification never arrived\n" + procs.log_tail("worker")
                    )
                names = [f"B{i}" for i in range(1, args.alerts + 1)]
                before = len(ding.accepted)
                t0 = time.monotonic()
                _open(sessions, names)
                arrived, _ = wait_for(lambda: set(names) <= _told(ding), 300, 0.01)
                burst_s = time.monotonic() - t0
                if not arrived:
                    raise SystemExit("the burst did not all arrive\n" + procs.log_tail("worker"))
                messages = len(ding.accepted) - before
            finally:
                procs.stop_all()
                engine.dispose()
    finally:
        robots.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"one alert -> DingTalk: {single_s:.2f} s (baseline)")
    print(
        f"{args.alerts} alerts -> DingTalk: {burst_s:.2f} s in {messages} messages "
        f"({args.alerts / max(messages, 1):.0f} per message), refused {len(ding.refused)}"
    )
    print(f"ratio burst/baseline: {burst_s / single_s:.2f}")
    return 0 if not ding.refused else 1


if __name__ == "__main__":
    sys.exit(main())
