#!/usr/bin/env bash
# images/kind-node/build.sh: builds, with no container registry, the kind node image
# ember/kind-node:<K8S_VERSION> (override with EMBER_KIND_NODE_IMAGE) and everything it needs,
# each piece cached by version under $EMBER_CACHE (default ~/.cache/ember):
#   kind, kubelet, kubeadm, kube-proxy, control plane  tests/cluster/build-binaries.sh e2e (Go, k8s.io/kubernetes)
#   crictl            kind-node/crictl/<CRICTL_VERSION>    go build from the Go proxy's sigs.k8s.io/cri-tools
#   coredns           kind-node/coredns/<tag kubeadm wants> go install github.com/coredns/coredns
#   etcd              kind-node/etcd/<tag kubeadm wants>    go build of go.etcd.io/etcd/server/v3's etcdmain
#   pause             kind-node/pause/<tag kubeadm wants>   gcc -static of kubernetes' build/pause/linux/pause.c
#   containerd, runc, CNI plugins   kind-node/debs/         Debian sid .debs (containerd 2.x; trixie has 1.7)
#   node root fs      rootfs/ (images/rootfs.sh)            debootstrap trixie + systemd, iptables, ...
# The component images carry exactly the names `kubeadm config images list` prints
# (registry.k8s.io/kube-apiserver:<v> ...) and are imported into the node image's containerd
# (namespace k8s.io, pinned), as `kind build node-image` does. kind's own node-image files
# (entrypoint, systemd units, containerd config) are taken from the pinned kind module source.
# A second run with the same inputs does nothing (the node image carries a label with the input key).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../../tests/cluster/versions.env
source "$repo/tests/cluster/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
logdir=$cache/logs
work=$cache/kind-node
mkdir -p "$logdir" "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
NODE_IMAGE=${EMBER_KIND_NODE_IMAGE:-ember/kind-node:$K8S_VERSION}
k8s=$cache/k8s/$K8S_VERSION
node=$cache/k8s/$K8S_VERSION-node
uris=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uris=${uris:-http://deb.debian.org/debian}

say() { echo "kind-node: $*" >&2; }
fail() { say "$1 failed; read $2"; exit 1; }
stamp() { [ -f "$1/.complete" ]; }

# ---------------------------------------------------------------- Go and C builds
build_crictl() {
  local out=$work/crictl/$CRICTL_VERSION log=$logdir/build-crictl-$CRICTL_VERSION.log
  stamp "$out" && return 0
  say "building crictl $CRICTL_VERSION (log: $log)"
  mkdir -p "$out"
  # `go install ...@v` fails here: the proxy refuses cri-tools' version list (used for the deprecation
  # check). Building inside the downloaded module works.
  (
    set -euxo pipefail
    dir=$(go mod download -json "sigs.k8s.io/cri-tools@$CRICTL_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    cd "$dir"
    go build -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" -o "$out/crictl" ./cmd/crictl
    "$out/crictl" --version
  ) >"$log" 2>&1 || fail "crictl $CRICTL_VERSION" "$log"
  touch "$out/.complete"
}

build_coredns() {  # build_coredns vX.Y.Z
  local v=$1 out=$work/coredns/$1 log=$logdir/build-coredns-$1.log
  stamp "$out" && return 0
  say "building CoreDNS $v (cold: ~5 min on 2 cores; log: $log)"
  mkdir -p "$out"
  (cd /tmp && GOBIN=$out go install -ldflags "-s -w" "github.com/coredns/coredns@$v" && "$out/coredns" -version) \
    >"$log" 2>&1 || fail "CoreDNS $v" "$log"
  touch "$out/.complete"
}

build_etcd() {  # build_etcd X.Y.Z
  # etcd's own main module carries replace directives (go install refuses it); its main is one call
  # to server/v3's etcdmain, so a two-line module of our own builds the same binary.
  local v=$1 out=$work/etcd/$1 log=$logdir/build-etcd-$1.log
  stamp "$out" && return 0
  say "building etcd v$v (cold: ~3 min on 2 cores; log: $log)"
  local src=$work/etcd/src-$v; mkdir -p "$out" "$src"
  (
    set -euxo pipefail
    cd "$src"
    printf 'module ember.dev/etcdbuild\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
      "$(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')" "$v" > go.mod
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
    go mod tidy
    go build -ldflags "-s -w" -o "$out/etcd" .
    "$out/etcd" --version
  ) >"$log" 2>&1 || fail "etcd v$v" "$log"
  touch "$out/.complete"
}

build_pause() {  # build_pause X.Y.Z
  local v=$1 out=$work/pause/$1 log=$logdir/build-pause-$1.log
  stamp "$out" && return 0
  say "building pause $v (log: $log)"
  mkdir -p "$out"
  (
    set -euxo pipefail
    dir=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    gcc -Os -Wall -Werror -static -DVERSION="v$v-ember" -o "$out/pause" "$dir/build/pause/linux/pause.c"
    strip "$out/pause"
    "$out/pause" -v
  ) >"$log" 2>&1 || fail "pause $v" "$log"
  touch "$out/.complete"
}

# ---------------------------------------------------------------- Debian sid packages
apt_sid() {  # same private configuration as tests/cluster/fetch-tools.sh
  local d=$cache/apt/sid
  if [ ! -f "$d/sources.list" ]; then
    mkdir -p "$d/lists/partial" "$d/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uris sid main" > "$d/sources.list"
  fi
  "$@" -q -o APT::Sandbox::User=root -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d" -o Debug::NoLocking=1
}

fetch_debs() {
  # Downloaded once and kept: sid moves, and the node image is keyed by these exact files.
  local out=$work/debs log=$logdir/kind-node-debs.log
  stamp "$out" && return 0
  say "fetching containerd, runc, containernetworking-plugins from Debian sid (log: $log)"
  mkdir -p "$out"
  (
    set -euxo pipefail
    cd "$out"
    apt_sid apt-get update
    apt_sid apt-get download containerd runc containernetworking-plugins
    ls -l ./*.deb
  ) >"$log" 2>&1 || fail "the Debian sid packages" "$log"
  touch "$out/.complete"
}

# ---------------------------------------------------------------- images
# build_image TAG CONTEXT : docker build (classic builder, layer cache) of CONTEXT/Dockerfile
build_image() {
  local tag=$1 ctx=$2 log=$logdir/kind-node-image-$(echo "$1" | tr '/:' '__').log
  docker build -q -t "$tag" "$ctx" >"$log" 2>&1 || fail "docker build $tag" "$log"
}

# link FILE... into a build context (hard links: the cache and contexts share a file system)
stage() { local dst=$1; shift; mkdir -p "$dst"; for f in "$@"; do ln -f "$f" "$dst/" 2>/dev/null || cp -f "$f" "$dst/"; done; }

static_base_image() {
  # FROM scratch + /tmp, passwd/group and the CA bundle, like the distroless static images upstream uses
  local ctx=$work/ctx/static-base
  rm -rf "$ctx"; mkdir -p "$ctx/root/tmp" "$ctx/root/etc/ssl/certs"
  chmod 1777 "$ctx/root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$ctx/root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$ctx/root/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/root/etc/ssl/certs/"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$ctx/root" -cf "$ctx/root.tar" .
  rm -rf "$ctx/root"
  printf 'FROM scratch\nADD root.tar /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n' > "$ctx/Dockerfile"
  build_image ember/kind-static-base:1 "$ctx"
}

component_images() {
  local c ctx
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    ctx=$work/ctx/$c; rm -rf "$ctx"; stage "$ctx" "$k8s/$c"
    printf 'FROM ember/kind-static-base:1\nCOPY %s /usr/local/bin/%s\nENTRYPOINT ["/usr/local/bin/%s"]\n' "$c" "$c" "$c" > "$ctx/Dockerfile"
    build_image "registry.k8s.io/$c:$K8S_VERSION" "$ctx"
  done
  ctx=$work/ctx/kube-proxy; rm -rf "$ctx"; stage "$ctx" "$node/kube-proxy" "$here/iptables-wrapper"
  cat > "$ctx/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY kube-proxy /usr/local/bin/kube-proxy
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN for t in iptables ip6tables; do \\
      update-alternatives --install /usr/sbin/\$t \$t /usr/sbin/iptables-wrapper 100 \\
        --slave /usr/sbin/\$t-restore \$t-restore /usr/sbin/iptables-wrapper \\
        --slave /usr/sbin/\$t-save \$t-save /usr/sbin/iptables-wrapper; \\
    done
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
EOF
  build_image "registry.k8s.io/kube-proxy:$K8S_VERSION" "$ctx"
  ctx=$work/ctx/etcd; rm -rf "$ctx"; stage "$ctx" "$work/etcd/${ETCD_TAG%-*}/etcd"
  printf 'FROM ember/kind-static-base:1\nCOPY etcd /usr/local/bin/etcd\nENTRYPOINT ["/usr/local/bin/etcd"]\n' > "$ctx/Dockerfile"
  build_image "registry.k8s.io/etcd:$ETCD_TAG" "$ctx"
  ctx=$work/ctx/coredns; rm -rf "$ctx"; stage "$ctx" "$work/coredns/$COREDNS_TAG/coredns"
  printf 'FROM ember/kind-static-base:1\nCOPY coredns /coredns\nUSER 65532:65532\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' > "$ctx/Dockerfile"
  build_image "registry.k8s.io/coredns/coredns:$COREDNS_TAG" "$ctx"
  ctx=$work/ctx/pause; rm -rf "$ctx"; stage "$ctx" "$work/pause/$PAUSE_TAG/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/Dockerfile"
  build_image "registry.k8s.io/pause:$PAUSE_TAG" "$ctx"
}

node_image() {
  local kinddir ctx key
  kinddir=$(cd /tmp && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  ctx=$work/ctx/node; rm -rf "$ctx"; mkdir -p "$ctx/kind-files" "$ctx/ember-files"
  cp -r "$kinddir/images/base/files/." "$ctx/kind-files/"; chmod -R u+w "$ctx/kind-files"
  rm -rf "$ctx/kind-files/LICENSES"
  cp -r "$here/files/." "$ctx/ember-files/"
  stage "$ctx/debs" "$work"/debs/*.deb
  stage "$ctx/bin" "$node/kubelet" "$node/kubeadm" "$k8s/kubectl" "$work/crictl/$CRICTL_VERSION/crictl"
  cat > "$ctx/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY debs /tmp/ember-debs
RUN dpkg -i /tmp/ember-debs/*.deb && rm -rf /tmp/ember-debs
COPY kind-files/ /
COPY ember-files/ /
COPY bin/ /usr/bin/
# restrict_oom_score_adj: these hosts lack CAP_SYS_RESOURCE, so no process may lower its OOM score;
# containerd must clamp the kubelet's negative scores (as kind does for rootless nodes) or runc fails.
RUN set -eux; \\
    chmod 0755 /kind /kind/bin /kind/bin/* /usr/local/bin/*; \\
    sed -i 's#/usr/local/bin/containerd#/usr/bin/containerd#' /etc/systemd/system/containerd.service; \\
    sed -i 's#sandbox_image = "registry.k8s.io/pause:[^"]*"#sandbox_image = "registry.k8s.io/pause:$PAUSE_TAG"#' /etc/containerd/config.toml; \\
    grep -q 'pause:$PAUSE_TAG' /etc/containerd/config.toml; \\
    sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml; \\
    grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*; \\
    echo ReadKMsg=no >> /etc/systemd/journald.conf; \\
    ln -sf /usr/lib/systemd/systemd /sbin/init; \\
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service; \\
    systemctl mask systemd-binfmt.service; \\
    mkdir -p /etc/kubernetes/manifests /opt/cni; ln -sfn /usr/lib/cni /opt/cni/bin; \\
    ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json; \\
    printf '%s' '$K8S_VERSION' > /kind/version; \\
    containerd --version; runc --version; kubelet --version; kubeadm version -o short; crictl --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  # The input key: every file of the context, the component images, the pinned versions.
  key=$( {
    # small files by content; the big ones (hard links into the cache) by size and time
    (cd "$ctx" && find . -type f -size -2M -print0 | sort -z | xargs -0 sha256sum)
    (cd "$ctx" && find . -type f -size +2M -printf '%p %s %T@\n' | sort)
    sha256sum "$here/build.sh"
    for i in "${COMPONENTS[@]}"; do echo "$i $(docker image inspect -f '{{.Id}}' "$i")"; done
    docker image inspect -f '{{.Id}}' "$ROOTFS_IMAGE"
  } | sha256sum | cut -c1-16)
  if [ "$(docker image inspect -f '{{ index .Config.Labels "ember.kind-node" }}' "$NODE_IMAGE" 2>/dev/null)" = "$key" ]; then
    say "$NODE_IMAGE is up to date ($key)"
    return 0
  fi
  local log=$logdir/kind-node-image.log stagetag=ember/kind-node-stage:$key
  say "building $NODE_IMAGE (log: $log)"
  docker build -t "$stagetag" "$ctx" >"$log" 2>&1 || fail "docker build of the node image" "$log"
  # Preload: start containerd in a container of the staged image, import the component images into
  # namespace k8s.io (pinned, not unpacked: kind's own `kind build node-image` procedure), commit.
  local tar=$work/images.tar cid
  docker save -o "$tar" "${COMPONENTS[@]}" >>"$log" 2>&1 || fail "docker save of the component images" "$log"
  cid=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$stagetag" infinity)
  (
    set -euxo pipefail
    docker exec "$cid" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
    docker exec "$cid" bash -c 'for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; cat /var/log/containerd-build.log; exit 1'
    docker exec -i "$cid" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
      --all-platforms --no-unpack --digests - < "$tar"
    docker exec "$cid" ctr --namespace=k8s.io images list -q | sort | tee "$work/preloaded.txt"
    for i in "${COMPONENTS[@]}"; do grep -qx "$i" "$work/preloaded.txt"; done
    docker exec "$cid" bash -c 'pkill containerd; for i in $(seq 1 20); do pgrep -x containerd >/dev/null || exit 0; sleep 0.5; done; exit 1'
    docker exec "$cid" rm -f /var/log/containerd-build.log
    docker commit \
      --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
      --change "LABEL ember.kind-node=$key" --change "LABEL ember.kubernetes-version=$K8S_VERSION" \
      "$cid" "$NODE_IMAGE"
  ) >>"$log" 2>&1 || { docker rm -f "$cid" >/dev/null; fail "preloading the node image" "$log"; }
  docker rm -f "$cid" >/dev/null
  docker rmi "$stagetag" >/dev/null 2>&1 || true
  rm -f "$tar"
  say "built $NODE_IMAGE ($key)"
}

# ---------------------------------------------------------------- main
bash "$repo/images/docker-up.sh"
bash "$here/docker-runtime.sh"
bash "$repo/tests/cluster/build-binaries.sh" e2e
mapfile -t COMPONENTS < <("$node/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
tag_of() { printf '%s\n' "${COMPONENTS[@]}" | grep "/$1:" | sed 's/.*://'; }
ETCD_TAG=$(tag_of etcd) COREDNS_TAG=$(tag_of coredns) PAUSE_TAG=$(tag_of pause)
[ -n "$ETCD_TAG" ] && [ -n "$COREDNS_TAG" ] && [ -n "$PAUSE_TAG" ] || { say "unexpected kubeadm image list: ${COMPONENTS[*]}"; exit 1; }
build_crictl
build_coredns "$COREDNS_TAG"
build_etcd "${ETCD_TAG%-*}"
build_pause "$PAUSE_TAG"
fetch_debs
ROOTFS_IMAGE=ember/kind-node-rootfs:trixie
say "node root fs $ROOTFS_IMAGE (images/rootfs.sh; log: $logdir/kind-node-rootfs.log)"
# shellcheck disable=SC2086  # the package list is word-split on purpose
bash "$repo/images/rootfs.sh" trixie "$ROOTFS_IMAGE" $KIND_NODE_ROOTFS_PACKAGES >/dev/null 2>"$logdir/kind-node-rootfs.log" \
  || fail "the node root fs" "$logdir/kind-node-rootfs.log"
static_base_image
component_images
node_image
echo "$NODE_IMAGE"
