"""The service processes' collector settings (loopline/runtime.py ``tune_gc``)."""

from __future__ import annotations

import json
import subprocess
import sys

from loopline.runtime import GC_THRESHOLDS


def test_tune_gc_freezes_the_start_and_raises_the_thresholds():
    # In a process of its own: the test run's collector stays as it is.
    code = (
        "import gc, json; from loopline.runtime import tune_gc; tune_gc(); "
        "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    thresholds, frozen = json.loads(out.stdout)
    assert tuple(thresholds) == GC_THRESHOLDS and GC_THRESHOLDS[0] > 700
    assert frozen > 1000  # what was loaded at start is out of the collector's walks
