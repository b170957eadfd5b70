#!/usr/bin/env bash
# rootfs.sh SUITE TAG [PACKAGE...]
# A Debian root filesystem made by debootstrap (minbase + PACKAGEs) and imported into the local
# Docker engine as TAG. The tarball is cached by (suite, package set) under
# ~/.cache/ember/rootfs/, so a second call only re-imports (or does nothing when TAG already holds it).
# Suites other than the host's come from the same mirror (trixie, sid, bookworm-backports).
set -euo pipefail
suite=$1 tag=$2
shift 2
pkgs=$(printf '%s\n' "$@" | sed '/^$/d' | sort -u | paste -sd, -)
key=$(printf '%s|%s' "$suite" "$pkgs" | sha256sum | cut -c1-16)
cache=${EMBER_CACHE:-$HOME/.cache/ember}/rootfs
mirror=${EMBER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/$suite-$key.tar
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  work=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "rootfs: debootstrap $suite (+${pkgs:-nothing}) -> $tarball" >&2
  debootstrap --variant=minbase ${pkgs:+--include="$pkgs"} "$suite" "$work/root" "$mirror" >&2
  rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin \
    "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/log/"*.log
  tar --numeric-owner -C "$work/root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
if [ "$(docker image inspect -f '{{ index .Config.Labels "ember.rootfs" }}' "$tag" 2>/dev/null)" != "$key" ]; then
  echo "rootfs: docker import $tarball as $tag" >&2
  docker import --change "LABEL ember.rootfs=$key" --change 'CMD ["/bin/bash"]' "$tarball" "$tag" >/dev/null
fi
echo "$tag"
