"""Worker processes for independent runs (check's specs, fix's candidates), BLAS kept to one
thread.

The runs are the parallelism: OpenBLAS's default of a thread per core gains little on these small
matrices, oversubscribes the cores once there are several workers (2 workers on 2 cores ran slower
than 1), and rounds differently from a single thread. So every run, serial or in a worker, uses
one BLAS thread and computes the same numbers whatever ``jobs`` is (threadpoolctl does the
limiting).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """One BLAS thread for the body, here and in processes started meanwhile; then restore."""
    saved = {var: os.environ.get(var) for var in _BLAS_ENV}
    os.environ.update({var: "1" for var in _BLAS_ENV})
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _init_worker() -> None:
    threadpool_limits(limits=1, user_api="blas")


def pmap(
    fn: Callable, items: list, jobs: int | None = None, on_done: Callable | None = None
) -> list:
    """``[fn(item) for item in items]``, in worker processes when ``jobs`` (default: the cores)
    and ``items`` are both more than one; results in input order; ``on_done(result)`` as each
    arrives. Under ``--cluster`` the items go to that backend instead (``nandoctor.cluster``)."""
    from nandoctor.cluster import active_backend

    jobs = min(jobs or available_cores(), len(items))
    results: list = []
    with single_threaded_blas():
        if (backend := active_backend()) is not None:  # units carry this thread policy along
            return backend.map(fn, items, on_done)
        if jobs <= 1:
            for item in items:
                results.append(fn(item))
                if on_done:
                    on_done(results[-1])
            return results
        # fork (Linux): workers start at once with everything imported; elsewhere fork is
        # unsafe (macOS) or missing (Windows), and spawned workers import afresh.
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_init_worker
        ) as pool:
            for r in pool.map(fn, items):
                results.append(r)
                if on_done:
                    on_done(r)
    return results
