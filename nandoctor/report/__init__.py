"""Reporters: one module per result type, each a registry of format name -> renderer."""
