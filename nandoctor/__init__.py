"""nandoctor: a NaN doctor for NumPy neural-network training."""

__version__ = "0.1.0"

_LAZY = {"watch": "nandoctor.trace.api", "NonFiniteError": "nandoctor.trace.events"}


def __getattr__(name: str):
    """``nandoctor.watch`` and ``nandoctor.NonFiniteError``, imported on first use only, so that
    ``import nandoctor`` (and the start of ``nandoctor trace``) stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nandoctor' has no attribute {name!r}")
