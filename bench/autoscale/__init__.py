"""Autoscaling benchmark: Ember's policy vs HPA+KEDA, Knative KPA and an oracle, in pure simulation."""
