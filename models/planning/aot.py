"""The single-line search compiled ahead of time: a plan of one plain line needs no numba.

Importing numba and loading its first cached kernel takes 0.6-0.9 s of a process's start
on this 2-core machine, most of a 1 s ``loopline plan``. The kernels that the one-line case
runs (construction, timing, iterated dynasearch, tie-breaker pass) are the same source
(``kernel.py``) compiled by ``numba.pycc`` into a plain extension module, which loads in
about a millisecond with numpy alone. ``optimize.warm_up(ahead_of_time=True)`` builds it
next to numba's cache (it needs a C compiler; without one the JIT kernel keeps doing the
work, with the same answers); ``module()`` returns it, or None when it is not built for
this very source.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_KERNEL = _HERE / "kernel.py"

# Exported kernels and their one signature each: the dtypes and C layouts ``optimize``
# passes on the single-line path (``Arrays`` makes every array contiguous).
_LINES = "i4[::1], f8[:,:,::1], i8[::1], f8[::1], f8[::1], f8[::1], i4[::1], i8[::1], i4[::1]"
SIGNATURES = {
    "construct_list": f"Tuple((i4[::1], i4[::1]))(i8[::1], f8[:,::1], f8[::1], {_LINES})",
    "construct_atc": (
        "Tuple((i4[::1], i4[::1]))(f8, f8, i8, f8[::1], i4[::1], i4[::1], f8[:,::1], f8[::1], "
        f"f8[::1], {_LINES})"
    ),
    "decode_kernel": (
        "Tuple((f8[::1], f8[::1], f8[::1]))(f8[:,::1], f8[::1], i4[::1], f8[:,:,::1], "
        "i8[::1], f8[::1], f8[::1], f8[::1], i4[::1], i4[::1], i4[::1])"
    ),
    "tardy_cost": "f8(f8[::1], f8[::1], f8[::1])",
    "wt_rounds": (
        "i8(f8[::1], f8[::1], f8[::1], f8, i4[::1], i4[::1], f8[::1], i8[::1], u8[::1], "
        "i8[::1], i8)"
    ),
    "wt_polish": "i8(f8[::1], f8[::1], f8[::1], f8[::1], f8, i4[::1], i8)",
}

_loaded: dict[str, ModuleType | None] = {}


def _name() -> str:
    """The module's name: a digest of the kernel's source and the signatures."""
    digest = hashlib.sha256(_KERNEL.read_bytes())
    digest.update(repr(sorted(SIGNATURES.items())).encode())
    return f"_wt_aot_{digest.hexdigest()[:16]}"


def _dirs() -> list[Path]:
    """Where the module may live, in order: NUMBA_CACHE_DIR alone when set (as numba does),
    else beside the source, else the user's cache."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return [Path(env) / "loopline-aot"]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loopline-aot"
    return [_HERE / "__pycache__", user]


def _file(directory: Path, name: str) -> Path:
    return directory / f"{name}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


def module() -> ModuleType | None:
    """The compiled single-line kernels for this source, or None when not built."""
    name = _name()
    if name in _loaded:
        return _loaded[name]
    found: ModuleType | None = None
    for directory in _dirs():
        path = _file(directory, name)
        if not path.is_file():
            continue
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            found = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(found)
        except Exception:  # a broken file: the JIT kernel does the work
            log.warning("cannot load the compiled single-line planner %s", path, exc_info=True)
            found = None
            continue
        if all(hasattr(found, fn) for fn in SIGNATURES):
            break
        found = None
    _loaded[name] = found
    return found


def build() -> Path | None:
    """Compile the module unless it is there; its path, or None when it cannot be built
    (no C compiler, no writable place): the JIT kernel then does the work."""
    name = _name()
    for directory in _dirs():
        if _file(directory, name).is_file():
            return _file(directory, name)
    try:
        from numba.pycc import CC

        from loopline.models.planning import kernel
    except Exception:
        log.warning("numba.pycc is not available: no compiled single-line planner")
        return None
    for directory in _dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".aot-", dir=directory))
        except OSError:
            continue
        try:
            cc = CC(name)
            cc.output_dir = str(work)
            cc.verbose = False
            for fn, signature in SIGNATURES.items():
                cc.export(fn, signature)(getattr(kernel, fn).py_func)
            cc.compile()
            built = _file(work, name)
            os.replace(built, _file(directory, name))  # atomic: readers see all or nothing
            _loaded.pop(name, None)
            return _file(directory, name)
        except Exception as exc:
            log.warning("cannot build the compiled single-line planner in %s: %s", directory, exc)
            return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return None
