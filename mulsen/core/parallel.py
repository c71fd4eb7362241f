"""One function over many items: in this process, in worker processes (one per core), or on a Ray cluster.

The seam for expensive per-item work (loading, feature extraction and scoring of samples, one bank per
modality): results come back in item order whatever runs them, so every reduction over them is the same on
every backend (tests compare the model files). Processes rather than threads because the heaviest steps
(open3d's FPFH, mesh parsing) hold the GIL: two threads gave 1.1x on two cores, two processes 1.8x.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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


class Executor(Protocol):
    """Runs ``fn`` over ``items``, results in item order; an exception in any item is raised to the caller."""

    @property
    def name(self) -> str: ...

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]: ...


@dataclass(frozen=True)
class InProcess:
    """Everything in the calling process (tests, debugging, torch networks)."""

    name: str = "inprocess"

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]:
        return map_ordered(fn, items, 1, progress)


@dataclass(frozen=True)
class LocalPool:
    """Forked worker processes on this machine (the default: one per core)."""

    jobs: int = 0  # 0: every core this process may use
    name: str = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]:
        return map_ordered(fn, items, self.jobs or available_cores(), progress)


@dataclass(frozen=True)
class RayCluster:
    """Tasks on a Ray cluster (``address``: "auto" for the cluster this machine belongs to, "ray://HOST:PORT",
    or None to start a local one). Each item is one task asking ``cpus`` CPUs and ``gpus`` GPUs; functions
    and items travel by Ray's serialiser, so samples are read where the task runs: every worker needs the
    dataset at the same path (an NFS or object-store mount)."""

    address: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    name: str = "ray"

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]:
        ray = ray_module()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(_call)
        shared = ray.put(fn)  # one copy of the function (and the model it may carry) per node, not per task
        refs = [task.remote(shared, item) for item in items]
        gathered = (ray.get(ref) for ref in refs)  # in item order, each as soon as it is done
        return list(progress(gathered, len(items)) if progress else gathered)


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        from mulsen.core.errors import MulsenError

        raise MulsenError("the ray backend needs Ray: pip install 'mulsen-toolkit[ray]'") from None
    return ray


BACKENDS = ("local", "inprocess", "ray")


def executor(backend: str = "local", jobs: int = 0, address: str | None = None, gpus: float = 0.0) -> Executor:
    """The executor a command line asks for (``--backend``, ``--jobs``, ``--address``)."""
    if backend == "local":
        return InProcess() if jobs == 1 else LocalPool(jobs)
    if backend == "inprocess":
        return InProcess()
    if backend == "ray":
        return RayCluster(address, gpus=gpus)
    from mulsen.core.errors import ConfigError

    raise ConfigError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")


def as_executor(workers: int | Executor) -> Executor:
    """A worker count (1: in process) or an executor, as an executor."""
    if isinstance(workers, int):
        return InProcess() if workers <= 1 else LocalPool(workers)
    return workers
