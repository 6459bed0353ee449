"""Work units on a Dask cluster: the backend ``parallel.pmap`` dispatches to under ``--cluster``.

A *backend* maps a function over work units and returns the results in input order, calling
``on_done(result)`` as each one finishes; the local process pool of :mod:`nandoctor.parallel` is
the embedded default, and :class:`DaskBackend` sends the same units to a Dask distributed
scheduler (an existing one at an address, or an in-process ``LocalCluster``). Nothing here imports
Dask until a cluster is asked for, so commands without ``--cluster`` never load it.

Same answers: every unit carries the BLAS thread limit the client runs under, the client's
thread policy for training (``--threads`` and its cores: a run trains with the count the client
would choose for its spec), and the client's nandoctor and NumPy versions (checked on the
worker), so a unit computes the same bits on any
worker as in a local process. Units are pure: a worker that dies has its units run again on
another one (Dask reschedules them), with identical results. A unit that kills every worker it
runs on (Dask gives up after ``distributed.scheduler.allowed-failures`` deaths) becomes
``lost(item, reason)``, as a dead local worker does in ``pmap``, so one bad spec does not end a
``check``. Ctrl-C (any exception while waiting) cancels every submitted unit.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from nandoctor.errors import UsageProblem

ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"
ENV_TIMEOUT = "NANDOCTOR_CLUSTER_TIMEOUT"
CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler, and to see a worker (env: ENV_TIMEOUT)
POLL_SECONDS = 0.5  # how often a waiting map looks for finished units and living workers
INSTALL_HINT = "pip install 'nandoctor[dask]'"


class ClusterProblem(UsageProblem):
    """The cluster cannot do the work: unreachable, no workers, mismatched versions (exit 2)."""


Lost = Callable[[Any, str], Any]  # (item, reason) -> the result of a unit that killed its worker


class Backend(Protocol):
    def map(
        self,
        fn: Callable,
        items: list,
        on_done: Callable | None = None,
        lost: Lost | None = None,
        on_arrival: Callable[[int, Any], None] | None = None,
    ) -> list:
        """``[fn(item) for item in items]`` in input order; ``on_done(result)`` and
        ``on_arrival(index, result)`` as each ends."""


_active: ContextVar[Backend | None] = ContextVar("nandoctor_backend", default=None)


def active_backend() -> Backend | None:
    """The backend ``pmap`` sends work to, or None for the local process pool."""
    return _active.get()


@contextmanager
def using(backend: Backend) -> Iterator[Backend]:
    token = _active.set(backend)
    try:
        yield backend
    finally:
        _active.reset(token)


def timeout_seconds() -> float:
    try:
        return max(float(os.environ.get(ENV_TIMEOUT, CONNECT_TIMEOUT)), 0.1)
    except ValueError:
        return CONNECT_TIMEOUT


@dataclass(frozen=True)
class UnitPolicy:
    """What travels with every unit so that a worker computes what the client would."""

    blas_threads: int
    versions: tuple[str, str]  # (nandoctor, numpy) of the client
    # (--threads, cores) of the client: a run trains with the BLAS threads the client would
    # choose for its spec (nandoctor.parallel.threads_for), whatever the worker's cores
    threads: tuple[int | None, int] = (None, 1)


def client_policy() -> UnitPolicy:
    import numpy as np
    from threadpoolctl import threadpool_info

    import nandoctor
    from nandoctor.parallel import thread_policy

    blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return UnitPolicy(
        min(blas, default=1), (nandoctor.__version__, np.__version__), thread_policy()
    )


def run_unit(item: Any, fn: Callable, policy: UnitPolicy) -> Any:
    """On a worker: ``fn(item)`` under the client's BLAS thread limit, after a version check."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    import nandoctor
    from nandoctor.parallel import thread_policy_of

    here = (nandoctor.__version__, np.__version__)
    if here != policy.versions:
        raise ClusterProblem(
            f"a Dask worker runs nandoctor {here[0]} with NumPy {here[1]}, the client"
            f" nandoctor {policy.versions[0]} with NumPy {policy.versions[1]}: install the same"
            " versions on the workers, or results could differ"
        )
    with (
        threadpool_limits(limits=policy.blas_threads, user_api="blas"),
        thread_policy_of(policy.threads),
    ):
        return fn(item)


class DaskBackend:
    """Units as Dask tasks on one client's cluster, collected in input order."""

    def __init__(self, client) -> None:
        self.client = client

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    def map(
        self,
        fn: Callable,
        items: list,
        on_done: Callable | None = None,
        lost: Lost | None = None,
        on_arrival: Callable[[int, Any], None] | None = None,
    ) -> list:
        """Every item as a task; ``lost(item, reason)`` is the result of one that killed every
        worker it ran on (without it, :class:`ClusterProblem`)."""
        from distributed import as_completed

        if not items:
            return []
        policy = client_policy()
        batch = uuid.uuid4().hex[:8]
        name = getattr(fn, "__name__", "unit")
        keys = [f"{name}-{batch}-{i}" for i in range(len(items))]
        # one graph for every unit (a submit per unit costs a message each)
        futures = self.client.map(run_unit, items, fn=fn, policy=policy, key=keys, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(items)
        # results fetched by the client's event loop as units finish, errors as values
        finished = as_completed(
            futures, loop=self.client.loop, with_results=True, raise_errors=False
        )
        idle_since: float | None = None
        try:
            while not finished.is_empty():
                ready = finished.next_batch(block=False)
                for future, outcome in ready:
                    i = index[future.key]
                    results[i] = self._result(future, outcome, items[i], lost)
                    if on_arrival:
                        on_arrival(i, results[i])
                    if on_done:
                        on_done(results[i])
                if not ready and not self._wait(finished):
                    idle_since = self._check_alive(idle_since)
        except BaseException:
            self.client.cancel(futures)  # Ctrl-C or a failure: no unit keeps running for us
            raise
        return results

    @staticmethod
    def _wait(finished) -> bool:
        """Wait for the next unit to finish; False after ``POLL_SECONDS`` without one."""
        with finished.thread_condition:  # notified as soon as a unit finishes
            if not finished.queue.empty():
                return True
            return finished.thread_condition.wait(timeout=POLL_SECONDS)

    def _result(self, future, outcome, item: Any, lost: Lost | None) -> Any:
        """A unit's result; its error raised here, but a lost unit's registered result."""
        from distributed import KilledWorker

        if future.status != "error":
            return outcome
        error = outcome[1]
        if isinstance(error, KilledWorker):
            reason = "every Dask worker that ran it died (out of memory, or a crash)"
            if lost is not None:
                return lost(item, reason)
            raise ClusterProblem(f"cluster: {reason}") from None
        raise error

    def _check_alive(self, idle_since: float | None) -> float | None:
        """Fail, rather than wait for ever, when the cluster has had no worker for too long."""
        if self.workers:
            return None
        now = time.monotonic()
        if idle_since is None:
            return now
        if now - idle_since > timeout_seconds():
            raise ClusterProblem(
                f"cluster: no Dask worker has been connected for {timeout_seconds():g} s;"
                " the remaining units cannot run"
            )
        return idle_since


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterProblem(
            f"--cluster needs Dask's distributed scheduler, which is not installed: {INSTALL_HINT}"
        ) from None
    return distributed


@contextmanager
def connect(address: str, workers: int | None = None) -> Iterator[DaskBackend]:
    """A backend on the scheduler at ``address``, or on a new ``LocalCluster`` of ``workers``
    single-threaded worker processes (default: the cores) for ``address == "local"``."""
    import logging

    distributed = _import_distributed()
    from nandoctor.parallel import available_cores

    limit = timeout_seconds()
    if address != "local":
        _check_address(address)
    with _quiet_logs():
        cluster = None
        if address == "local":
            try:
                cluster = distributed.LocalCluster(
                    n_workers=workers or available_cores(),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",  # any free port: never a clash with a running one
                    silence_logs=logging.CRITICAL,  # the workers' shut-down chatter
                )
            except Exception as e:  # noqa: BLE001  (whatever stopped it, one line and exit 2)
                raise ClusterProblem(
                    f"--cluster local: cannot start a local Dask cluster ({_one_line(e)})"
                ) from None
        try:
            client = distributed.Client(cluster or address, timeout=limit, set_as_default=False)
        except (OSError, ValueError, TypeError) as e:
            if cluster is not None:
                cluster.close()
            raise ClusterProblem(
                f"--cluster {address}: cannot reach a Dask scheduler within {limit:g} s"
                f" ({_one_line(e)}); start one with `dask scheduler`, or use --cluster local"
            ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=limit)
        except (TimeoutError, OSError):
            raise ClusterProblem(
                f"--cluster {address}: the scheduler has had no worker for {limit:g} s;"
                " start some with `dask worker ADDRESS`"
            ) from None
        yield DaskBackend(client)
    finally:
        with _quiet_logs():
            client.close()
            if cluster is not None:
                cluster.close()


def _check_address(address: str) -> None:
    """Refuse an address no Dask transport can dial, before a client is made for it."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError:
        scheme, location = "", ""
    if scheme not in backends or not location:
        raise ClusterProblem(
            f"--cluster {address!r}: not a scheduler address; write tcp://HOST:PORT"
            f" (schemes: {', '.join(sorted(backends))}) or local"
        )


def cluster_backend(address: str | None, workers: int | None = None):
    """The context for a command's ``--cluster`` option: work goes to that cluster inside it;
    without an address, a context that does nothing (and imports no Dask)."""
    if not address:
        return nullcontext()
    return _connected(address, workers)


@contextmanager
def _connected(address: str, workers: int | None) -> Iterator[Backend]:
    with connect(address, workers) as backend, using(backend):
        yield backend


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Dask's own start-up and shut-down chatter stays out of the command's stderr."""
    import logging

    loggers = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
