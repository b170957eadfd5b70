#!/usr/bin/env bash
# Make sure a local Docker engine answers: installs Debian's docker.io (and debootstrap, which the
# image builders use) when missing and starts dockerd in the background when it is not running.
# No registry is reachable from these machines: every image Ember uses is built locally (images/).
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "docker-up: installing ${need[*]} from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi
if docker info >/dev/null 2>&1; then exit 0; fi
log=${EMBER_CACHE:-$HOME/.cache/ember}/logs/dockerd.log
mkdir -p "$(dirname "$log")"
echo "docker-up: starting dockerd (log: $log)" >&2
nohup setsid dockerd >"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "docker-up: dockerd did not answer within 60 s; see $log" >&2
tail -20 "$log" >&2
exit 1
