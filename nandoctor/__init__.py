"""nandoctor: a NaN doctor for NumPy neural-network training."""

__version__ = "0.1.0"
