"""Ember activator: the data plane of an InferenceService while it has no serving replica."""
