"""The replica container's PID 1: start the engine cold, or restore it from a compatible verified
checkpoint; fall back to a cold start once on any restore failure; serve /healthz, /startup,
POST /checkpoint and /metrics. See replica_image/README.md."""
