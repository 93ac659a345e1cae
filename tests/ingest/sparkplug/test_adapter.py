"""The Sparkplug host's rules, message by message: sessions, seq, aliases, mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loopline.ingest.mqtt.messages import ProgressMessage, StateMessage
from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.adapter import SparkplugAdapter
from tests.ingest.sparkplug.conftest import STATE, dbirth, nbirth, ndeath, payload, plant

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
N = "spBv1.0/G/{}/E1"
D = "spBv1.0/G/{}/E1/PLC1"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spb(clock: Clock) -> SparkplugAdapter:
    return SparkplugAdapter(plant(), seq_start=lambda line: 100, monotonic=clock)


def _born(spb: SparkplugAdapter, **kw: object) -> None:
    spb.decode(N.format("NBIRTH"), nbirth(), AT)
    spb.decode(D.format("DBIRTH"), dbirth(1, **kw), AT)  # type: ignore[arg-type]


def test_births_report_current_state_and_counters_with_loopline_seqs(spb):
    node = spb.decode(N.format("NBIRTH"), nbirth(bdseq=4, state=3), AT)
    assert node.reports == [
        StateMessage("s1", "L2", 100, node.reports[0].ts, "down", None, "sparkplug", None)
    ]
    out = spb.decode(D.format("DBIRTH"), dbirth(1, good=40, scrap=2), AT)
    state, progress = out.reports
    assert isinstance(state, StateMessage) and (state.line, state.state, state.seq) == (
        "L1",
        "running",
        100,
    )
    assert isinstance(progress, ProgressMessage)
    assert (progress.work_order, progress.good, progress.scrap, progress.seq) == (
        "WO-1-1",
        40,
        2,
        101,
    )
    assert progress.ts == datetime(2025, 12, 1, 8, 0, tzinfo=UTC)  # the payload's timestamp
    assert out.problems == [] and out.gap is None and out.rebirth is None


def test_data_by_alias_reports_only_what_changed_and_maps_codes(spb):
    _born(spb)
    out = spb.decode(
        D.format("DDATA"),
        payload([(None, 13, schema.INT32, 3), (None, 14, schema.INT32, 17)], seq=2),
        AT,
    )
    assert len(out.reports) == 1
    (s,) = out.reports
    assert isinstance(s, StateMessage)
    assert (s.state, s.reason_code) == ("down", "BD-MECH")
    out = spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 7)], seq=3), AT)
    (p,) = out.reports
    assert isinstance(p, ProgressMessage) and (p.good, p.scrap, p.work_order) == (7, 0, "WO-1-1")


def test_seq_wraps_after_255_without_a_gap(spb):
    spb.decode(N.format("NBIRTH"), nbirth(), AT)
    for seq in list(range(1, 256)) + [0, 1]:
        out = spb.decode(D.format("DBIRTH"), dbirth(seq), AT)
        assert out.gap is None, seq


def test_a_gap_asks_for_a_rebirth_once_per_interval_and_still_applies(spb, clock):
    _born(spb)
    out = spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 5)], seq=5), AT)
    assert (out.gap.expected, out.gap.got) == (2, 5)
    assert out.rebirth == ("G", "E1")
    assert [r.good for r in out.reports] == [5]  # cumulative: still true, still applied
    again = spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 6)], seq=9), AT)
    assert again.gap is not None and again.rebirth is None  # asked 0 s ago
    clock.t = 10.0
    assert spb.decode(D.format("DDATA"), payload([], seq=0), AT).rebirth == ("G", "E1")


def test_data_before_any_birth_asks_for_one_and_is_dead_lettered(spb):
    out = spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 5)], seq=5), AT)
    assert out.rebirth == ("G", "E1")
    assert [p.reason for p in out.problems] == ["sparkplug_no_birth"]
    assert out.reports == []


def test_an_unknown_alias_asks_for_a_rebirth(spb):
    _born(spb)
    out = spb.decode(D.format("DDATA"), payload([(None, 99, schema.UINT64, 5)], seq=2), AT)
    assert out.rebirth == ("G", "E1") and out.reports == []


def test_ndeath_of_the_session_kills_every_line_of_the_node_a_late_one_does_not(spb):
    spb.decode(N.format("NBIRTH"), nbirth(bdseq=7), AT)
    late = spb.decode(N.format("NDEATH"), ndeath(bdseq=6), AT)
    assert late.ignored and late.deaths == []
    assert spb.node_online("G", "E1")
    out = spb.decode(N.format("NDEATH"), ndeath(bdseq=7), AT)
    assert sorted(line for line, _ in out.deaths) == ["L1", "L2"]
    assert not spb.node_online("G", "E1")
    # After a death, data waits for a new birth.
    after = spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 1)], seq=3), AT)
    assert after.rebirth == ("G", "E1") and after.reports == []


def test_ddeath_kills_its_line_only(spb):
    _born(spb)
    out = spb.decode(D.format("DDEATH"), payload([], seq=2), AT)
    assert out.deaths == [("L1", "Sparkplug DDEATH")]
    assert spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 1)], seq=3), AT).rebirth


def test_an_nbirth_without_bdseq_is_refused(spb):
    out = spb.decode(N.format("NBIRTH"), payload([(STATE, 1, schema.INT32, 1)], seq=0), AT)
    assert [p.reason for p in out.problems] == ["sparkplug_no_bdseq"]
    assert not spb.node_online("G", "E1")


def test_bad_payloads_topics_and_values_become_problems(spb):
    _born(spb)
    assert [
        p.reason for p in spb.decode(D.format("DDATA"), b"\xff\xfe\x00garbage", AT).problems
    ] == ["sparkplug_bad_payload"]
    assert [p.reason for p in spb.decode("spBv1.0/G/DDATA/E1", b"", AT).problems] == [
        "sparkplug_bad_topic"
    ]
    unknown = spb.decode(D.format("DDATA"), payload([(None, 13, schema.INT32, 42)], seq=2), AT)
    assert [p.reason for p in unknown.problems] == ["sparkplug_unknown_state"]
    assert "42" in unknown.problems[0].detail
    negative = spb.decode(D.format("DDATA"), payload([(None, 10, schema.INT64, -3)], seq=3), AT)
    assert [p.reason for p in negative.problems] == ["sparkplug_bad_metric"]


def test_commands_state_and_unmapped_nodes_are_not_for_loopline(spb):
    assert spb.decode("spBv1.0/G/NCMD/E1", b"", AT).ignored
    assert spb.decode("spBv1.0/STATE/loopline", b'{"online": true}', AT).ignored
    assert spb.decode("spBv1.0/G/NBIRTH/Other", nbirth(), AT).ignored


def test_loopline_seq_goes_on_from_where_the_live_model_left_it():
    starts: list[str] = []

    def seq_start(line: str) -> int:
        starts.append(line)
        return 41

    spb = SparkplugAdapter(plant(), seq_start=seq_start)
    _born(spb)
    out = spb.decode(D.format("DDATA"), payload([(None, 10, schema.UINT64, 9)], seq=2), AT)
    assert [r.seq for r in out.reports] == [43]
    assert starts == ["L1"]  # read once per line


def test_the_gap_alert_reads_in_both_languages():
    from loopline.dashboard.i18n import alert_text

    alert = {
        "kind": "sparkplug_gap",
        "message": "stored",
        "details": {"node": "G/E1", "expected": 2, "got": 5},
    }
    assert (
        alert_text(alert, "en") == "Sparkplug node G/E1: seq 5 where 2 was due; rebirth requested"
    )
    assert "G/E1" in alert_text(alert, "zh-CN") and "节点" in alert_text(alert, "zh-CN")
