#!/usr/bin/env bash
# Registers the OCI runtime `ember-runc` (images/kind-node/runc-bounded: runc minus the capabilities
# missing from this host's bounding set) in the running Docker engine, without restarting it:
# `runtimes` is one of the daemon.json options dockerd reloads on SIGHUP. The default runtime is left
# as it is; only containers started with --runtime=ember-runc use it (kind nodes, through
# images/kind-node/docker-shim/docker). Idempotent; does nothing where --privileged already works.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dst=/usr/local/libexec/ember/runc-bounded
conf=/etc/docker/daemon.json
mkdir -p "$(dirname "$dst")" /etc/docker
if ! cmp -s "$here/runc-bounded" "$dst"; then install -m 0755 "$here/runc-bounded" "$dst"; fi
# grep without -q reads all its input: with -q it may exit first and, under pipefail, docker's
# SIGPIPE would read as "not registered".
has_runtime() { docker info --format '{{json .Runtimes}}' | grep -F '"ember-runc"' >/dev/null; }
if has_runtime; then exit 0; fi
python3 - "$conf" "$dst" <<'PY'
import json, os, sys
conf, dst = sys.argv[1], sys.argv[2]
d = json.load(open(conf)) if os.path.exists(conf) and os.path.getsize(conf) else {}
d.setdefault("runtimes", {})["ember-runc"] = {"path": dst}
tmp = conf + ".tmp"
json.dump(d, open(tmp, "w"), indent=2)
os.replace(tmp, conf)
PY
pid=$(pgrep -xo dockerd)
echo "docker-runtime: registering ember-runc in $conf and reloading dockerd ($pid) with SIGHUP" >&2
kill -HUP "$pid"
for _ in $(seq 1 20); do
  has_runtime && exit 0
  sleep 0.5
done
echo "docker-runtime: dockerd did not pick up the ember-runc runtime; see its log" >&2
exit 1
