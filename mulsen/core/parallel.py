"""One function over many items, in this process or in worker processes (one per core).

The seam for expensive per-item work (loading and feature extraction of samples): results come back in
item order whatever runs them, so every reduction over them is the same on every backend. Processes rather
than threads because the heaviest steps (open3d's FPFH, mesh parsing) hold the GIL: two threads gave 1.1x
on two cores, two processes 1.9x.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[Iterable[R], int], Iterable[R]]


def available_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# Work handed to forked workers by inheritance: (function, items) per running map, so neither has to pickle
# (a closure or a loaded model works as well as a module-level function); only results travel back.
_INHERITED: dict[int, tuple[Callable, Sequence]] = {}
_TOKENS = itertools.count()


def _call_inherited(task: tuple[int, int]):
    fn, items = _INHERITED[task[0]]
    return fn(items[task[1]])


def _worker_setup() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle (it cancels the pool and cleans up); a worker that
    # caught them would print its own traceback. One BLAS thread per worker: the workers are the parallelism.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn (the detect extra)
        return
    threadpool_limits(1)


def map_ordered(fn: Callable[[T], R], items: Sequence[T], jobs: int = 1,
                progress: Progress | None = None) -> list[R]:
    """``[fn(item) for item in items]``, on ``jobs`` worker processes when ``jobs > 1`` (and there is more
    than one item). Results must pickle; an exception in a worker is raised here."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1 or len(items) < 2:
        serial = map(fn, items)
        return list(progress(serial, len(items)) if progress else serial)
    fork = "fork" in multiprocessing.get_all_start_methods()
    token = next(_TOKENS)
    if fork:  # workers start in milliseconds with everything imported, and inherit the work itself
        _INHERITED[token] = (fn, items)
        call: Callable = _call_inherited
        tasks: Sequence = [(token, i) for i in range(len(items))]
    else:  # pragma: no cover - spawn platforms: function and items must pickle
        call, tasks = fn, items
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(items)),
                               mp_context=multiprocessing.get_context("fork" if fork else None),
                               initializer=_worker_setup)
    try:
        mapped = pool.map(call, tasks)
        results = list(progress(mapped, len(items)) if progress else mapped)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _INHERITED.pop(token, None)
    pool.shutdown()
    return results
