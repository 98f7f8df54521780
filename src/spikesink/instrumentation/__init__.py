"""Instrumentation: the one layer through which analyses reach a model (family adapters, taps, the attention observer, the spike-token definition)."""
