"""Ember: autoscaled, warm LLM inference replicas on Kubernetes."""
