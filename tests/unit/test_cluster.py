"""The cluster backend without a cluster: what travels with a unit, the option's errors, and that
nothing imports Dask unless asked to."""

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from threadpoolctl import threadpool_info, threadpool_limits

import nandoctor
from nandoctor import cluster
from nandoctor.cli import main
from nandoctor.parallel import pmap

ROOT = Path(__file__).resolve().parents[2]
HEALTHY = str(ROOT / "configs" / "healthy.yaml")


def blas_threads(_item=None) -> int | None:
    return min(
        (p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=None
    )


def test_a_unit_runs_under_the_clients_blas_thread_limit():
    if blas_threads() is None:
        pytest.skip("no BLAS library loaded")
    with threadpool_limits(limits=1, user_api="blas"):
        policy = cluster.client_policy()
    assert policy.blas_threads == 1
    assert policy.versions == (nandoctor.__version__, np.__version__)
    with threadpool_limits(limits=2, user_api="blas"):  # a worker's own default
        assert cluster.run_unit(None, blas_threads, policy) == 1


def test_a_unit_trains_with_the_clients_thread_policy(monkeypatch):
    """--threads and the client's cores travel with the unit: a worker with other cores (and no
    --threads of its own) chooses the count the client would."""
    from nandoctor import parallel

    monkeypatch.setattr(parallel, "_threads", 3)
    policy = cluster.client_policy()
    assert policy.threads == (3, parallel.available_cores())
    monkeypatch.setattr(parallel, "_threads", None)
    monkeypatch.setattr(parallel, "available_cores", lambda: 64)  # the worker's machine
    assert cluster.run_unit(None, lambda _: parallel.thread_policy(), policy) == (
        3,
        policy.threads[1],
    )
    assert parallel.thread_policy() == (None, 64)  # restored after the unit


def test_a_worker_with_other_versions_refuses_the_unit():
    policy = cluster.UnitPolicy(1, (nandoctor.__version__, "0.0.1"))
    with pytest.raises(cluster.ClusterProblem, match="NumPy 0.0.1"):
        cluster.run_unit(None, blas_threads, policy)


class Recorder:
    """A backend that runs units here, in reverse order, to show pmap defers to it."""

    def __init__(self):
        self.calls = []

    def map(self, fn, items, on_done=None, lost=None, on_arrival=None):
        self.calls.append((len(items), lost))
        out = {i: fn(item) for i, item in reversed(list(enumerate(items)))}
        for i in sorted(out):
            if on_arrival:
                on_arrival(i, out[i])
            if on_done:
                on_done(out[i])
        return [out[i] for i in range(len(items))]


def test_pmap_sends_items_to_the_active_backend_and_keeps_order():
    backend = Recorder()
    with cluster.using(backend):
        assert pmap(abs, [-1, -2, 3], jobs=4, lost=print) == [1, 2, 3]
    assert backend.calls == [(3, print)]
    assert cluster.active_backend() is None


@pytest.mark.parametrize("address", ["nonsense://x", "tcp://127.0.0.1", "host:87x6"])
def test_a_malformed_address_is_exit_2(address):
    pytest.importorskip("distributed")
    r = CliRunner().invoke(main, ["check", HEALTHY, "--cluster", address])
    assert r.exit_code == 2
    assert r.stderr == (
        f"--cluster {address!r}: not a scheduler address; write tcp://HOST:PORT"
        " (schemes: inproc, tcp, tls, ucx, ws, wss) or local\n"
    )


@pytest.mark.parametrize("command", [["check", HEALTHY], ["sweep", HEALTHY, "--lr", "0.1"]])
def test_without_dask_installed_asking_for_a_cluster_is_one_line(monkeypatch, command):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    r = CliRunner().invoke(main, [*command, "--cluster", "local"])
    assert r.exit_code == 2
    assert r.stderr == (
        "--cluster needs Dask's distributed scheduler, which is not installed:"
        " pip install 'nandoctor[dask]'\n"
    )


def test_without_cluster_dask_is_never_imported(modules_loaded_by):
    args = ["check", "configs/healthy.yaml", "--steps", "3"]
    assert modules_loaded_by(args, ("dask", "distributed"), ROOT) == []
