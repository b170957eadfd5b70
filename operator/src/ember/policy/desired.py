"""Where the desired replica count comes from, in order of precedence (pure)."""

from __future__ import annotations

from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus


def clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, n))


def desired_replicas(spec: InferenceServiceSpec, status: InferenceServiceStatus) -> tuple[int, str]:
    """(count, source). `spec.replicas` (kubectl scale) wins; then the autoscaler's last active
    decision; then the count already being converged to; then minReplicas. Always within bounds,
    except a manual count, which the CRD already bounds by maxReplicas."""
    if spec.replicas is not None:
        return spec.replicas, "manual"
    lo, hi = spec.scaling.min_replicas, spec.scaling.max_replicas
    d = status.last_decision
    if d is not None and d.mode == "active":
        return clamp(d.desired_replicas, lo, hi), "autoscaler"
    if status.observed_generation is not None:
        return clamp(status.desired_replicas, lo, hi), "previous"
    return lo, "minReplicas"
