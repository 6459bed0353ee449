"""The training engine: data, network math, optimizers, setup of a run, the trainer, runs."""
