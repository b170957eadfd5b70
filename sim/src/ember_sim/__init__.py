"""Simulated vLLM replicas and trace replay."""
