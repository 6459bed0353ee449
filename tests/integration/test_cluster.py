"""``sweep`` and ``check`` on a real Dask cluster: a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, started once for this module (bounded waits, killed at the end).

Results through the cluster must equal the local ones bit for bit in every format; a worker
killed mid-run has its units retried elsewhere; a unit that kills every worker it runs on is that
spec's error; Ctrl-C cancels what was submitted; an unreachable scheduler is exit 2.
"""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nandoctor import cluster as clustermod
from nandoctor import sweep as sweepmod
from nandoctor.check import collect, run_checks
from nandoctor.cli import main
from nandoctor.report.check import RENDERERS as CHECK_RENDERERS
from nandoctor.report.output import as_text
from nandoctor.report.sweep import RENDERERS as SWEEP_RENDERERS
from nandoctor.spec.models import load_spec

if os.environ.get("CI"):  # .ci/run installs nandoctor[dask]: there these tests must run
    import cloudpickle
    import distributed
else:
    distributed = pytest.importorskip("distributed")
    cloudpickle = pytest.importorskip("cloudpickle")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
START_TIMEOUT = 60  # seconds for the scheduler and both workers to come up on a loaded machine
WORKERS = 2
STEPS = 40  # caps the example specs' budgets: enough to reach every verdict's kind quickly


@dataclass
class Cluster:
    address: str
    client: object  # a distributed.Client of the test's own, to watch and poke the cluster
    folder: Path


def _dask_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script) if script.exists() else shutil.which("dask") or "dask", *args]


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    env = {
        **os.environ,
        # one death per unit is forgiven (the retry), a second one makes it a lost unit
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    log = (folder / "dask.log").open("w")
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    procs = [
        subprocess.Popen(
            _dask_command("scheduler", "--port", "0", "--scheduler-file", str(scheduler_file))
            + common,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    ]
    client = None
    try:
        _wait_until(scheduler_file.exists, START_TIMEOUT, "the scheduler did not start")
        for _ in range(WORKERS):
            procs.append(
                subprocess.Popen(
                    _dask_command(
                        "worker",
                        "--scheduler-file",
                        str(scheduler_file),
                        "--nthreads",
                        "1",
                        "--death-timeout",
                        str(START_TIMEOUT),
                    )
                    + common,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=folder,  # workers see no relative path of the tests
                    start_new_session=True,
                )
            )
        address = json.loads(scheduler_file.read_text())["address"]
        client = distributed.Client(address, timeout=START_TIMEOUT, set_as_default=False)
        client.wait_for_workers(WORKERS, timeout=START_TIMEOUT)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield Cluster(address, client, folder)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        if client is not None:
            client.close()
        for p in reversed(procs):
            _stop(p)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (a worker's nanny and its worker), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def ready(cluster):
    """The module's cluster with both workers up (a test before may have killed some)."""
    cluster.client.wait_for_workers(WORKERS, timeout=START_TIMEOUT)
    return cluster


def untimed(results) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in results]


def zero_seconds(results):
    for r in results:
        r.seconds = 0.0
    return results


@pytest.fixture(scope="module")
def local_checks():
    """The example specs checked locally: the reference the cluster's results must equal."""
    files = collect([str(CONFIGS)])
    return files, run_checks(files, steps=STEPS)


def test_check_over_the_example_specs_equals_local_in_every_format(ready, local_checks):
    files, local = local_checks
    done = []
    with clustermod.cluster_backend(ready.address):
        remote = run_checks(files, steps=STEPS, on_done=done.append)
    assert len(done) == len(files)  # progress: one unit per spec, counted as each ends
    assert untimed(remote) == untimed(local)
    assert {"nonfinite", "warning", "healthy"} <= {r.status for r in local}
    for fmt, render in CHECK_RENDERERS.items():
        expected = as_text(render(zero_seconds(copy.deepcopy(local))))
        assert as_text(render(zero_seconds(remote))) == expected, fmt


def test_check_data_files_travel_with_the_units(ready, tmp_path, monkeypatch):
    """The workers run in another folder: a spec's relative data path is read by the client."""
    shutil.copytree(CONFIGS / "data", tmp_path / "data")
    shutil.copy(CONFIGS / "zero_variance_standardize.yaml", tmp_path / "spec.yaml")
    (tmp_path / "missing.yaml").write_text(
        (tmp_path / "spec.yaml").read_text().replace("constant_feature.csv", "nope.csv")
    )
    monkeypatch.chdir(tmp_path)
    files = ["spec.yaml", "missing.yaml"]
    local = run_checks(files, jobs=1)
    with clustermod.cluster_backend(ready.address):
        remote = run_checks(files)
    assert untimed(remote) == untimed(local)
    assert local[0].status == "nonfinite" and local[1].status == "invalid"


def test_check_cli_via_environment_address(ready, local_checks):
    files, local = local_checks
    args = ["check", *files, "--steps", str(STEPS), "--format", "json"]
    r = CliRunner(env={"DASK_SCHEDULER_ADDRESS": ready.address}).invoke(main, args)
    assert r.exit_code == 1, r.output
    remote = [
        {k: v for k, v in x.items() if k != "seconds"} for x in json.loads(r.stdout)["results"]
    ]
    assert remote == untimed(local)


def test_sweep_grid_equals_local_in_every_format(ready, monkeypatch):
    # small replica groups, so each grid point is several units that must come back in order
    monkeypatch.setattr(sweepmod, "CHUNK_BYTES", 2 * 32 * 20 * 8)
    spec = load_spec(CONFIGS / "relu_high_lr.yaml").capped(60)
    rates = sweepmod.parse_rates("1e-3:3:7")
    grid = sweepmod.parse_grid(("model.layers.0.init=he,xavier", "train.optimizer=sgd,adam"))
    local = sweepmod.sweep_points(spec, rates, grid, edge=True)
    progress = []
    with clustermod.cluster_backend(ready.address):
        remote = sweepmod.sweep_points(
            spec, rates, grid, edge=True, on_progress=lambda *counts: progress.append(counts)
        )
    # 4 grid points x 4 replica groups of at most 2 rates, then the edge probes, round by round
    assert progress[15] == (16, 16)
    probes = sum(r.probe for p in local for r in p.runs)
    assert probes > 4 and progress[-1] == (16 + probes, 16 + probes)
    assert [done for done, _ in progress] == list(range(1, 17 + probes))
    assert sum(p.edge is not None for p in local) >= 2
    for fmt, render in SWEEP_RENDERERS.items():
        assert as_text(render(spec, remote)) == as_text(render(spec, local)), fmt


def test_sweep_cli_json_is_the_same_document(ready):
    args = [
        "sweep",
        str(CONFIGS / "relu_high_lr.yaml"),
        "--lr",
        "1e-3:3:6",
        "--steps",
        "60",
        "--set",
        "train.optimizer=sgd,momentum",
        "--format",
        "json",
    ]
    local = CliRunner().invoke(main, args)
    remote = CliRunner().invoke(main, [*args, "--cluster", ready.address])
    assert remote.exit_code == local.exit_code == 0, remote.output
    assert remote.stdout == local.stdout


def _long_specs(folder: Path, count: int, steps: int) -> list[str]:
    spec = yaml.safe_load((CONFIGS / "healthy.yaml").read_text())
    paths = []
    for seed in range(count):
        spec.update(seed=seed, train={**spec["train"], "steps": steps})
        path = folder / f"long_{seed}.yaml"
        path.write_text(yaml.safe_dump(spec))
        paths.append(str(path))
    return paths


def _in_thread(fn):
    """Run ``fn`` in a thread; returns a join() that gives its result or raises its error."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001  (handed to the test's thread)
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join(timeout: float):
        thread.join(timeout)
        assert not thread.is_alive(), f"still running after {timeout} s"
        if "error" in box:
            raise box["error"]
        return box["result"]

    return join, thread.is_alive


def test_a_worker_killed_mid_run_has_its_units_retried_with_identical_results(ready, tmp_path):
    files = _long_specs(tmp_path, 3, 2000)  # about a second each even on an idle machine
    local = run_checks(files)

    def on_cluster():
        with clustermod.cluster_backend(ready.address):
            return run_checks(files)

    join, running = _in_thread(on_cluster)
    busy: dict = {}
    _wait_until(
        lambda: (
            busy.update({w: ks for w, ks in ready.client.processing().items() if ks})
            or busy
            or not running()
        ),
        START_TIMEOUT,
        "no unit started",
    )
    assert busy, "every unit finished before a worker could be killed"
    victim = next(iter(busy))
    pids = ready.client.run(os.getpid, workers=[victim])
    os.kill(pids[victim], signal.SIGKILL)  # the worker process, as the OOM killer would
    remote = join(120)
    assert victim not in ready.client.scheduler_info()["workers"]
    assert untimed(remote) == untimed(local)
    assert all(r.status == "healthy" for r in remote)


def _crash_on_boom(path, fail_on, loaded, started):
    """Stands in for a spec that kills its worker process (a segfault, the OOM killer)."""
    import nandoctor.check

    if path.endswith("boom.yaml"):
        os._exit(13)
    return nandoctor.check._unpatched_check(path, fail_on, loaded, started)


def _patch_workers() -> None:
    import nandoctor.check

    if not hasattr(nandoctor.check, "_unpatched_check"):
        nandoctor.check._unpatched_check = nandoctor.check._check
        nandoctor.check._check = _crash_on_boom


def test_a_spec_that_kills_every_worker_is_that_specs_error(ready, tmp_path):
    boom = tmp_path / "boom.yaml"
    shutil.copy(CONFIGS / "healthy.yaml", boom)
    ready.client.run(_patch_workers)
    with clustermod.cluster_backend(ready.address):
        (result,) = run_checks([str(boom)], steps=5)
    assert result.path == str(boom)
    assert result.status == "error" and not result.passed
    assert result.verdict == (
        "error: every Dask worker that ran it died (out of memory, or a crash);"
        " no result for this spec"
    )


def test_ctrl_c_cancels_every_submitted_unit(ready, tmp_path):
    files = _long_specs(tmp_path, 6, 400)

    def interrupt(_result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), clustermod.cluster_backend(ready.address):
        run_checks(files, on_done=interrupt)

    def tasks_left(dask_scheduler) -> int:
        return len(dask_scheduler.tasks)

    _wait_until(
        lambda: ready.client.run_on_scheduler(tasks_left) == 0, 30, "units were left running"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_exit_2_within_the_timeout(monkeypatch):
    monkeypatch.setenv(clustermod.ENV_TIMEOUT, "1")
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    r = CliRunner().invoke(main, ["check", str(CONFIGS / "healthy.yaml"), "--cluster", address])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert f"--cluster {address}: cannot reach a Dask scheduler within 1 s" in r.stderr
    assert time.monotonic() - started < 30


def test_cluster_local_starts_its_own():
    args = ["check", str(CONFIGS / "dead_relu.yaml")]
    args += ["--steps", "20", "--format", "json"]
    local = CliRunner().invoke(main, args)
    remote = CliRunner().invoke(main, [*args, "--cluster", "local", "--jobs", "1"])
    assert remote.exit_code == local.exit_code, remote.output
    strip = lambda out: [  # noqa: E731
        {k: v for k, v in r.items() if k != "seconds"} for r in json.loads(out)["results"]
    ]
    assert strip(remote.stdout) == strip(local.stdout)
