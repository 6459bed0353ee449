"""BLAS threads as part of a run's identity, and worker processes for independent runs.

OpenBLAS may round a matmul differently with another thread count, so a verdict only repeats bit
for bit under the same count. Yet one thread for every run would make a large spec run many
times slower than the user's own loop on a many-core machine. So each spec gets its count once,
from its shapes and the cores (:func:`threads_for`: the cores when its largest matmul has at
least ``THREADED_MACS`` multiply-adds, else one), or from ``--threads N``
(:func:`set_threads`); :func:`~nandoctor.engine.runs.train` trains under it, so every re-run of
that spec -- ``run``, its verification, ``sweep``, ``check``, ``fix`` -- uses the same count, and
worker pools size themselves as ``cores // threads``. The count is recorded in the JSON
(``threads``) and the trace. Outside training, BLAS keeps one thread (threadpoolctl does the
limiting, here and in the workers): small matrices gain nothing from more, and several workers
with a thread per core each oversubscribe the machine.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nandoctor.errors import WorkerLost

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
THREADED_MACS = 1 << 20  # a matmul of at least this many multiply-adds gains from more threads
_threads: int | None = None  # --threads N, for this process and the workers it starts
_cores: int | None = None  # on a cluster worker: the client's cores (threads_for's default)


def set_threads(n: int | None) -> None:
    """Use ``n`` BLAS threads for every run (``None``: choose per spec)."""
    global _threads
    _threads = n


def thread_policy() -> tuple[int | None, int]:
    """What :func:`threads_for` depends on besides the spec: ``(--threads, cores)``. A cluster
    unit carries it so that a worker on another machine trains with the client's count."""
    return _threads, _cores or available_cores()


@contextmanager
def thread_policy_of(policy: tuple[int | None, int]) -> Iterator[None]:
    """Choose thread counts by ``policy`` (from :func:`thread_policy`) for the body."""
    global _threads, _cores
    saved = _threads, _cores
    _threads, _cores = policy
    try:
        yield
    finally:
        _threads, _cores = saved


def threads_for(spec, data_shape: tuple[int, int], cores: int | None = None) -> int:
    """The BLAS threads a run of ``spec`` uses: ``--threads`` if given, else the cores when its
    largest matmul (batch x fan-in x units, one replica) reaches ``THREADED_MACS``, else 1.
    ``data_shape``: ``(rows, features)`` of the prepared inputs."""
    if _threads:
        return _threads
    rows, fan_in = data_shape
    size = spec.train.batch_size
    batch = rows if size == "full" else min(size, rows)
    biggest = 0
    for layer in spec.model.layers:
        biggest = max(biggest, batch * fan_in * layer.units)
        fan_in = layer.units
    return (cores or _cores or available_cores()) if biggest >= THREADED_MACS else 1


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """``n`` BLAS threads for the body, here and in processes started meanwhile; then restore."""
    saved = {var: os.environ.get(var) for var in _BLAS_ENV}
    os.environ.update({var: str(n) for var in _BLAS_ENV})
    from threadpoolctl import threadpool_limits  # on use: `nandoctor trace` never needs it

    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def single_threaded_blas():
    """One BLAS thread for the body (the default outside training)."""
    return blas_threads(1)


def pmap(
    fn: Callable,
    items: list,
    jobs: int | None = None,
    on_done: Callable | None = None,
    *,
    lost: Callable[[object, str], object] | None = None,
    threads: int = 1,
    on_arrival: Callable[[int, object], None] | None = None,
    item_bytes: int = 0,
) -> list:
    """``[fn(item) for item in items]``, in worker processes when ``jobs`` (default: the cores
    divided by the ``threads`` each run uses) and ``items`` are both more than one; results in
    input order; ``on_done(result)`` as each arrives, in input order. Under ``--cluster`` the
    items go to that backend instead (``nandoctor.cluster``; there ``on_done`` follows the order
    units finish in, and each unit carries this process's thread policy, :func:`thread_policy`).

    ``on_arrival(index, result)`` is called as soon as each result is in, in the order they
    finish (a worker's process is reaped only after it): what a caller interrupted half-way can
    report as finished, including results that ``on_done`` still holds back for the input order.

    A worker that dies before returning (the OOM killer, a signal) loses its own item only:
    ``lost(item, reason)`` makes that item's result (without it, :class:`WorkerLost` is raised
    once the others have finished). On any exception or signal in the parent, every worker still
    running is killed and reaped before it propagates: no orphan, no zombie.

    ``item_bytes``: the memory one item's run needs at its peak; no more workers run at once
    than the memory available now holds (each holds its own copy of a run), at least one.
    """
    from nandoctor.cluster import active_backend

    jobs = min(jobs or max(1, available_cores() // max(threads, 1)), len(items))
    if item_bytes and jobs > 1:
        from nandoctor.engine.memory import available_memory

        jobs = max(1, min(jobs, available_memory() // item_bytes))
    results: list = []
    with single_threaded_blas():
        if (backend := active_backend()) is not None:  # units carry this thread policy along
            return backend.map(fn, items, on_done, lost=lost, on_arrival=on_arrival)
        if jobs <= 1:
            for i, item in enumerate(items):
                results.append(fn(item))
                if on_arrival:
                    on_arrival(i, results[-1])
                if on_done:
                    on_done(results[-1])
            return results
        return _in_workers(fn, items, jobs, on_done, lost, on_arrival)


def _in_workers(fn, items, jobs, on_done, lost, on_arrival=None) -> list:
    # on use: keeps the start-up of `nandoctor run` and `trace` light (multiprocessing: 13 ms)
    import multiprocessing
    from multiprocessing.connection import wait

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
                i, proc = running[conn]
                results[i] = _collect(conn, proc, items[i], lost, failures)
                if on_arrival:
                    on_arrival(i, results[i])
                # reaped only now: once a worker is gone, its result is recorded (a signal
                # before this leaves it to the cleanup below, which kills and reaps it)
                del running[conn]
                proc.join()
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
    proc = ctx.Process(target=_worker, args=(fn, items[i], write, _threads), daemon=True)
    proc.start()
    write.close()  # the worker holds the only write end: its death is an EOF here
    return read, (i, proc)


def _collect(conn, proc, item, lost, failures):
    """The result a finished worker sent, or what ``lost`` makes of a worker that died (the
    worker is reaped by the caller, except a dead one, whose exit code names its death)."""
    try:
        status, value = conn.recv()
    except (EOFError, OSError):
        status, value = "lost", None
    finally:
        conn.close()
    if status == "ok":
        return value
    if status == "raised":
        raise value
    proc.join()
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


def _worker(fn, item, conn, threads: int | None = None) -> None:
    """In the worker: run ``fn(item)`` and send back ("ok", result) or ("raised", exception).

    Ctrl-C reaches the whole process group: the worker ignores it and lets the parent, which
    owns it, end it. SIGTERM ends it at once.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    set_threads(threads)  # --threads, for a spawned worker that starts afresh
    try:
        message = ("ok", fn(item))
    except Exception as e:  # noqa: BLE001 - the parent re-raises it
        message = ("raised", e)
    try:
        conn.send(message)
    except Exception as e:  # noqa: BLE001 - an unpicklable result or exception
        conn.send(("raised", RuntimeError(f"{type(e).__name__}: {e}")))
    conn.close()
