"""Instrumentation: floating-point events caught as they happen, and the per-step history."""
