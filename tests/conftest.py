"""Shared test set-up: deterministic rendering."""

import pytest


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    """Rich output without colour or terminal-size guesses, whatever the developer's shell has."""
    for var in ("FORCE_COLOR", "TERM", "COLUMNS", "LINES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
