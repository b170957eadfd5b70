"""Typed activator settings (environment variables EMBER_ACTIVATOR_*), built once in main()."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMBER_ACTIVATOR_")

    kubeconfig: str | None = None
    """Kubeconfig path; unset means in-cluster credentials."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces whose InferenceServices it serves; empty: the whole cluster."""
    identity: str = "activator"
    """This replica's name in the demand annotation (the chart sets the pod name)."""
    port: int = Field(8080, ge=1, le=65535)
    """Port of the proxy (the InferenceServices' Services route here at zero)."""
    metrics_port: int = Field(9090, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz; 0 disables."""
    max_held_per_service: int = Field(256, ge=1, le=100_000)
    """Requests one service may hold; the next gets 429 with Retry-After."""
    hold_timeout_seconds: float = Field(300.0, gt=0)
    """How long a request may wait for a serving replica before it gets 503 (reason HoldTimeout)."""
    herd_limit: int = Field(4, ge=1, le=10_000)
    """Requests in flight to a fresh replica until it has answered one (the herd guard)."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Larger request bodies get 413 before they are held (vLLM's own limit is the engine's context)."""
    keepalive_seconds: float = Field(5.0, gt=0)
    """Interval of SSE comment keep-alives for held streaming requests that opt in."""
    default_time_to_ready_seconds: float = Field(60.0, gt=0)
    """Expected time to ready when the InferenceService's status names none (Retry-After, ETA)."""
    demand_refresh_seconds: float = Field(10.0, gt=0)
    """While it holds requests, the demand annotation is rewritten this often (the operator ignores
    entries older than 3x this: an activator that died stops counting)."""
    address_map_file: str | None = None
    """Local clusters without a pod network only: a Prometheus file_sd JSON whose entries map a pod
    (labels namespace, pod) to the host:port that serves it (ember-sim writes one). Unset in clusters."""
    upstream_timeout_seconds: float = Field(3600.0, gt=0)
    """Longest a forwarded request may take (long generations stream for minutes)."""
