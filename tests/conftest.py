"""Shared test set-up: deterministic rendering."""

import pytest


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    """Rich output without colour or terminal-size guesses, whatever the developer's shell has."""
    for var in ("FORCE_COLOR", "TERM", "COLUMNS", "LINES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")


def _small_relu(steps: int = 40, **train_keys):
    """A 10-20-5 ReLU regression (like relu_high_lr.yaml) with a short budget."""
    from nandoctor.spec.models import spec_from_dict

    return spec_from_dict(
        {
            "seed": 0,
            "data": {"source": "synthetic", "task": "regression", "samples": 128, "features": 10},
            "model": {
                "layers": [
                    {"units": 20, "activation": "relu", "init": "he"},
                    {"units": 5, "activation": "linear", "init": "xavier"},
                ]
            },
            "loss": "mse",
            "train": {"steps": steps, "batch_size": 32, "learning_rate": 0.1, **train_keys},
        }
    )


@pytest.fixture
def small():
    """``small(steps=40, **train_keys)``: a spec factory for the sweep and interruption tests."""
    return _small_relu


def _nesterov_high_momentum(steps: int):
    """A 20-64-1 tanh regression at lr 0.3 with Nesterov momentum 0.99: lower rates stay finite
    for the budget while their loss climbs by orders of magnitude (diverging, not stable)."""
    from nandoctor.spec.models import spec_from_dict

    return spec_from_dict(
        {
            "seed": 0,
            "data": {"task": "regression", "samples": 512, "features": 20, "outputs": 1},
            "model": {"layers": [{"units": 64, "activation": "tanh"}, {"units": 1}]},
            "train": {
                "steps": steps,
                "batch_size": 32,
                "learning_rate": 0.3,
                "optimizer": "nesterov",
                "momentum": 0.99,
            },
        }
    )


@pytest.fixture
def high_momentum():
    """``high_momentum(steps)``: the spec factory of the diverging-rate tests."""
    return _nesterov_high_momentum


def _modules_loaded_by(args: list[str], packages: tuple[str, ...], cwd) -> list[str]:
    """The modules of ``packages`` a fresh Python process has loaded after running the CLI with
    ``args`` in ``cwd`` (the command must exit 0): what a command pulls in, seen from outside."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from nandoctor.cli import main\n"
        f"r = CliRunner().invoke(main, {args!r})\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=cwd,
    )
    return json.loads(out.stdout)


@pytest.fixture
def modules_loaded_by():
    """``modules_loaded_by(args, packages, cwd)``: see :func:`_modules_loaded_by`."""
    return _modules_loaded_by
