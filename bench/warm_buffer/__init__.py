"""Warm-buffer benchmark: time from a scale decision to the new replicas Ready, with and without the
buffer, on the real local control plane (kwok GPU nodes) with node provisioning simulated as a delay
(ember_cluster.provisioner). Run: `python -m bench.warm_buffer --help`."""
