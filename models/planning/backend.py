"""Which build of the planner's kernel the optimiser calls: numba-compiled, or its source as
plain Python while the compiled build is not ready yet.

By default the compiled kernel (``kernel.py``) is used; its first call compiles for about a
minute and caches the result under ``__pycache__``. A process that must answer before that
minute is over (the demo) calls ``compile_in_background``: a child process compiles the
cache, this process then loads it, and until then ``active()`` is the same source run with
numba's JIT off (identical answers, slower: fine for a small factory's plans).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numba.core import config as numba_config

from loopline.models.planning import kernel as compiled

log = logging.getLogger(__name__)

# The child only compiles (or loads) every kernel signature and exits; it yields the CPU
# to the process it compiles for (niceness 10), which is starting up meanwhile.
_COMPILE_CODE = "import os; os.nice(10); from models.planning.optimize import warm_up; warm_up()"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]

_lock = threading.Lock()
_python: ModuleType | None = None
_use_python = False
_local = threading.local()


def python_kernel() -> ModuleType:
    """``kernel.py`` executed as plain Python (numba's JIT off while it is defined)."""
    global _python
    with _lock:
        if _python is None:
            spec = importlib.util.spec_from_file_location(
                "loopline.models.planning._kernel_python", compiled.__file__
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            saved = numba_config.DISABLE_JIT  # type: ignore[attr-defined]
            # njit reads the flag when it decorates: this copy's functions stay Python.
            numba_config.DISABLE_JIT = True  # type: ignore[attr-defined]
            try:
                spec.loader.exec_module(module)
            finally:
                numba_config.DISABLE_JIT = saved  # type: ignore[attr-defined]
            for name in dir(module):
                fn = getattr(module, name)
                if callable(fn) and getattr(fn, "__module__", None) == module.__name__:
                    setattr(module, name, _wrapping_quietly(fn))
            _python = module
        return _python


def _wrapping_quietly(fn: Callable[..., Any]) -> Callable[..., Any]:
    # The random generator relies on uint64 wrap-around, which compiled code does silently
    # and numpy scalars warn about.
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(over="ignore"):
            return fn(*args, **kwargs)

    return call


def active() -> ModuleType:
    """The kernel module the optimiser should call now."""
    forced = getattr(_local, "module", None)
    if forced is not None:
        return forced
    return python_kernel() if _use_python else compiled


def compiled_ready() -> bool:
    """Whether ``active()`` is the compiled kernel (for every thread)."""
    return not _use_python


def use_python_kernel() -> None:
    """Run the plain-Python kernel from now on, until ``load_compiled`` succeeds."""
    global _use_python
    python_kernel()
    _use_python = True


def use_compiled_kernel() -> None:
    """Back to the default: the compiled kernel (compiling on first use if not cached)."""
    global _use_python
    _use_python = False


def load_compiled() -> None:
    """Load (or compile) the compiled kernel in this thread, then switch every thread to it."""
    global _use_python
    from loopline.models.planning.optimize import warm_up

    _local.module = compiled
    try:
        warm_up()
    finally:
        _local.module = None
    _use_python = False


class BackgroundCompile:
    """A child process compiling the kernel cache, and the thread that switches to it."""

    def __init__(self, on_ready: Callable[[float], object] | None = None) -> None:
        self._on_ready = on_ready
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_lock = threading.Lock()
        self._stopped = threading.Event()
        self.done = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="planner-compile", daemon=True)

    def start(self) -> BackgroundCompile:
        use_python_kernel()
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            env = dict(os.environ)
            # The child imports this very source tree, installed or not.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p
            )
            with self._proc_lock:
                if self._stopped.is_set():
                    return
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", _COMPILE_CODE],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            _, err = self._proc.communicate()
            if self._stopped.is_set():
                return
            if self._proc.returncode != 0:
                self.error = err.decode(errors="replace")[-2000:]
                log.error("compiling the planner failed; it stays on plain Python:\n%s", self.error)
                return
            load_compiled()
            if self._on_ready is not None:
                self._on_ready(time.monotonic() - started)
        except Exception as exc:  # the plain-Python kernel keeps planning
            self.error = repr(exc)
            log.exception("compiling the planner failed; it stays on plain Python")
        finally:
            self.done.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the child if it still runs and wait for the thread; the process is back on
        the default (the compiled kernel, compiling on first use if it must)."""
        self._stopped.set()
        with self._proc_lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        use_compiled_kernel()


def compile_in_background(on_ready: Callable[[float], object] | None = None) -> BackgroundCompile:
    """Plan with the plain-Python kernel now and switch to the compiled one once it is built;
    ``on_ready`` gets the seconds it took."""
    return BackgroundCompile(on_ready).start()
