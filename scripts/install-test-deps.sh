#!/usr/bin/env bash
# Installs what the test suite needs beyond npm ci, on Debian:
#  - OS packages: a real etcd (snapshot source), Ceph RADOS Gateway (a real S3), curl (the README's examples run
#    as written), zstd and age (their CLIs check our compressed and encrypted output). Skips apt when all are present.
#  - The Node.js release the image ships (Dockerfile's NODE_IMAGE), as the npm package node-linux-<arch>: zstd takes
#    node:zlib's path there and the WASM one on an older Node, and test/codec/ runs both. Cached once per version
#    under ${XDG_CACHE_HOME:-$HOME/.cache}/talos-etcd-backup/node-v<version>/ (bin/node); test/support/node22.ts
#    looks for it at the same place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(etcd-server etcd-client radosgw ceph-mon ceph-osd curl ca-certificates zstd age)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: all OS packages present"
else
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"
fi

# The image's Node.js version: the one source of truth is the Dockerfile's `ARG NODE_IMAGE=node:<version>-...`
# that every FROM uses (or a literal `FROM node:<version>`).
node_version="$(grep -m1 -oE '^(ARG NODE_IMAGE=|FROM )node:[0-9]+\.[0-9]+\.[0-9]+' "$root/Dockerfile" | sed 's/.*node://' || true)"
if [ -z "$node_version" ]; then
  echo "install-test-deps: no node:<version> image in $root/Dockerfile (expected ARG NODE_IMAGE=node:X.Y.Z-...)" >&2
  exit 1
fi
case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64 | arm64) node_arch=arm64 ;;
  *) echo "install-test-deps: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
cache="${XDG_CACHE_HOME:-$HOME/.cache}/talos-etcd-backup"
node_dir="$cache/node-v$node_version"
if [ -x "$node_dir/bin/node" ] && [ "$("$node_dir/bin/node" --version 2>/dev/null)" = "v$node_version" ]; then
  echo "install-test-deps: Node.js $node_version present in $node_dir"
  exit 0
fi
echo "install-test-deps: fetching Node.js $node_version (npm package node-linux-$node_arch) into $node_dir"
mkdir -p "$cache"
work="$(mktemp -d "$cache/.node-v$node_version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# npm pack only downloads the tarball: nothing is installed, no package script runs.
(cd "$work" && npm pack --silent --ignore-scripts "node-linux-$node_arch@$node_version" </dev/null >/dev/null)
mkdir "$work/node"
tar -xzf "$work/node-linux-$node_arch-$node_version.tgz" -C "$work/node" --strip-components=1 --no-same-owner
if [ "$("$work/node/bin/node" --version)" != "v$node_version" ]; then
  echo "install-test-deps: $work/node/bin/node is not Node.js $node_version" >&2
  exit 1
fi
# Into place in one rename, so an interrupted run never leaves a half-extracted directory that looks present.
rm -rf "$node_dir"
mv "$work/node" "$node_dir"
echo "install-test-deps: Node.js $node_version ready: $node_dir/bin/node"
