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
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait

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


class WorkerLost(Exception):
    """A worker process died before returning its result (killed, out of memory)."""


def pmap(
    fn: Callable,
    items: list,
    jobs: int | None = None,
    on_done: Callable | None = None,
    *,
    lost: Callable[[object, str], object] | None = None,
) -> list:
    """``[fn(item) for item in items]``, in worker processes when ``jobs`` (default: the cores)
    and ``items`` are both more than one; results in input order; ``on_done(result)`` as each
    arrives, in input order.

    A worker that dies before returning (the OOM killer, a signal) loses its own item only:
    ``lost(item, reason)`` makes that item's result (without it, :class:`WorkerLost` is raised
    once the others have finished). On any exception or signal in the parent, every worker still
    running is killed and reaped before it propagates: no orphan, no zombie.
    """
    jobs = min(jobs or available_cores(), len(items))
    results: list = []
    with single_threaded_blas():
        if jobs <= 1:
            for item in items:
                results.append(fn(item))
                if on_done:
                    on_done(results[-1])
            return results
        return _in_workers(fn, items, jobs, on_done, lost)


def _in_workers(fn, items, jobs, on_done, lost) -> list:
    # fork (Linux): workers start at once with everything imported; elsewhere fork is
    # unsafe (macOS) or missing (Windows), and spawned workers import afresh.
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    results: dict[int, object] = {}
    failures: list[str] = []
    running: dict = {}  # the read end of a worker's pipe -> (item index, process)
    pending = iter(range(len(items)))
    reported = 0
    try:
        while True:
            while len(running) < jobs and (i := next(pending, None)) is not None:
                running.update([_start(ctx, fn, items, i)])
            if not running:
                break
            for conn in wait(list(running)):
                i, proc = running.pop(conn)
                results[i] = _collect(conn, proc, items[i], lost, failures)
            while reported in results:  # report in input order
                if on_done:
                    on_done(results[reported])
                reported += 1
    finally:
        for conn, (_i, proc) in running.items():
            proc.kill()
            proc.join()
            conn.close()
    if failures:
        raise WorkerLost("; ".join(failures))
    return [results[i] for i in range(len(items))]


def _start(ctx, fn, items, i):
    read, write = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(fn, items[i], write), daemon=True)
    proc.start()
    write.close()  # the worker holds the only write end: its death is an EOF here
    return read, (i, proc)


def _collect(conn, proc, item, lost, failures):
    """The result a finished worker sent, or what ``lost`` makes of a worker that died."""
    try:
        status, value = conn.recv()
    except (EOFError, OSError):
        status, value = "lost", None
    finally:
        conn.close()
    proc.join()
    if status == "ok":
        return value
    if status == "raised":
        raise value
    reason = _death(proc.exitcode)
    if lost is None:
        failures.append(reason)
        return None
    return lost(item, reason)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"its worker process was killed by {name}{hint}"
    return f"its worker process exited with code {exitcode} before returning a result"


def _worker(fn, item, conn) -> None:
    """In the worker: run ``fn(item)`` and send back ("ok", result) or ("raised", exception).

    Ctrl-C reaches the whole process group: the worker ignores it and lets the parent, which
    owns it, end it. SIGTERM ends it at once.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threadpool_limits(limits=1, user_api="blas")
    try:
        message = ("ok", fn(item))
    except Exception as e:  # noqa: BLE001 - the parent re-raises it
        message = ("raised", e)
    try:
        conn.send(message)
    except Exception as e:  # noqa: BLE001 - an unpicklable result or exception
        conn.send(("raised", RuntimeError(f"{type(e).__name__}: {e}")))
    conn.close()
