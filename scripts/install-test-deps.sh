#!/usr/bin/env bash
# Installs what the test suite needs beyond npm ci, on Debian:
#  - OS packages: a real etcd (snapshot source), Ceph RADOS Gateway (a real S3), curl (the README's examples run
#    as written), zstd and age (their CLIs check our compressed and encrypted output), prometheus (its promtool checks
#    the alert rules and the metrics), restic (its `forget` is the reference for the tiered retention policy). Skips
#    apt when all are present.
#  - The Node.js release the image ships (Dockerfile's NODE_IMAGE), as the npm package node-linux-<arch>: zstd takes
#    node:zlib's path there and the WASM one on an older Node, and test/job/codec/ runs both. Cached once per version
#    under ${XDG_CACHE_HOME:-$HOME/.cache}/talos-etcd-backup/node-v<version>/ (bin/node); test/harness/node22.ts
#    looks for it at the same place.
#  - The real Kubernetes control plane and etcd, built with Go from the Go module proxy, pinned by the Go modules
#    under test/harness/go/ (go.mod + go.sum; test/harness/go/generate.sh writes them): kube-apiserver,
#    kube-controller-manager and kubectl into .../kubernetes-v<version>/bin/, and etcd, etcdctl, etcdutl of each etcd
#    minor into .../etcd-v<version>/bin/. Built only when missing; test/harness/binaries.ts looks there.
#  - prometheus-operator's ServiceMonitor and PrometheusRule CRDs (from its module on the Go module proxy, pinned by
#    test/harness/go/prometheus-operator/go.mod) into .../prometheus-operator-v<version>/crds/, so the real API
#    server can check the chart's ServiceMonitor.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(etcd-server etcd-client radosgw ceph-mon ceph-osd curl ca-certificates zstd age prometheus restic)

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
mkdir -p "$cache"
work="$(mktemp -d "$cache/.work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ -x "$node_dir/bin/node" ] && [ "$("$node_dir/bin/node" --version 2>/dev/null)" = "v$node_version" ]; then
  echo "install-test-deps: Node.js $node_version present in $node_dir"
else
  echo "install-test-deps: fetching Node.js $node_version (npm package node-linux-$node_arch) into $node_dir"
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
fi

# ---- Kubernetes and etcd, built from the Go module proxy
gomods="$root/test/harness/go"
# The version a module pins: `require <path> <version>` in its go.mod (single line or inside a block).
pinned() { sed -nE "s#^(require)?[[:space:]]*$2 (v[0-9][^ ]*)( //.*)?\$#\\2#p" "$1" | head -n1; }
# Each build goes into $work first and into place in one rename, like Node above.
build_into() { # <cache dir> <module dir> <label> <build script: bash, $0 = the bin directory to fill>
  local dest="$1" module="$2" label="$3" script="$4"
  if ! command -v go >/dev/null 2>&1; then
    echo "install-test-deps: building $label needs Go (go 1.26+) and the Go module proxy; \`go\` is not on PATH" >&2
    exit 1
  fi
  local started=$SECONDS out="$work/$(basename "$dest")"
  echo "install-test-deps: building $label from $module (first build on 2 cores: a few minutes)"
  mkdir -p "$out/bin"
  (cd "$module" && bash -c "$script" "$out/bin")
  rm -rf "$dest"
  mv "$out" "$dest"
  echo "install-test-deps: built $label in $((SECONDS - started)) s: $dest/bin"
}
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local

k8s_version="$(pinned "$gomods/kubernetes/go.mod" k8s.io/kubernetes)"
k8s_dir="$cache/kubernetes-$k8s_version"
if [ -x "$k8s_dir/bin/kube-apiserver" ] && [ -x "$k8s_dir/bin/kube-controller-manager" ] && [ -x "$k8s_dir/bin/kubectl" ] \
  && "$k8s_dir/bin/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $k8s_version"; then
  echo "install-test-deps: Kubernetes $k8s_version present in $k8s_dir"
else
  # The replace list must still be the one the kubernetes .mod file implies (generate.sh writes it): a stale one
  # would build other staging versions than the release's.
  mod_file="$(cd "$gomods/kubernetes" && go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')"
  want="$(sed -nE "s#^\s*(k8s\.io/[^ ]+) => \./staging/.*#\1 => \1 v0.${k8s_version#v1.}#p" "$mod_file" | sort)"
  have="$(sed -nE 's#^\s*(k8s\.io/[^ ]+ => k8s\.io/[^ ]+ v[^ ]+)$#\1#p' "$gomods/kubernetes/go.mod" | sort)"
  if [ "$want" != "$have" ]; then
    echo "install-test-deps: $gomods/kubernetes/go.mod does not replace exactly the staging modules of k8s.io/kubernetes@$k8s_version; run test/harness/go/generate.sh" >&2
    exit 1
  fi
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"
  build_into "$k8s_dir" "$gomods/kubernetes" "Kubernetes $k8s_version (kube-apiserver, kube-controller-manager, kubectl)" \
    "go build -trimpath -ldflags '$ldflags' -o \"\$0/\" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl"
fi

for module in "$gomods"/etcd-v*/; do
  etcd_version="$(pinned "$module/go.mod" go.etcd.io/etcd/server/v3)"
  etcd_dir="$cache/etcd-$etcd_version"
  if [ -x "$etcd_dir/bin/etcd" ] && [ -x "$etcd_dir/bin/etcdctl" ] && [ -x "$etcd_dir/bin/etcdutl" ] \
    && "$etcd_dir/bin/etcd" --version 2>/dev/null | grep -qx "etcd Version: ${etcd_version#v}"; then
    echo "install-test-deps: etcd $etcd_version present in $etcd_dir"
    continue
  fi
  # server/v3 is `package main` at its module root: built as `etcd`; the module path's /v3 would name it `server`.
  build_into "$etcd_dir" "$module" "etcd $etcd_version (etcd, etcdctl, etcdutl)" \
    'go build -trimpath -ldflags "-s -w" -o "$0/etcd" go.etcd.io/etcd/server/v3 && go build -trimpath -ldflags "-s -w" -o "$0/" go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3'
done

po_version="$(pinned "$gomods/prometheus-operator/go.mod" github.com/prometheus-operator/prometheus-operator)"
po_dir="$cache/prometheus-operator-$po_version"
po_crds=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
if [ -f "$po_dir/crds/${po_crds[0]}" ] && [ -f "$po_dir/crds/${po_crds[1]}" ]; then
  echo "install-test-deps: prometheus-operator $po_version CRDs present in $po_dir"
else
  command -v go >/dev/null 2>&1 || { echo "install-test-deps: fetching prometheus-operator's CRDs needs Go; \`go\` is not on PATH" >&2; exit 1; }
  # Downloaded (and checked against go.sum) as a module; only two of its files are kept.
  po_module="$(cd "$gomods/prometheus-operator" && go mod download -json github.com/prometheus-operator/prometheus-operator | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p')"
  mkdir -p "$work/po/crds"
  for f in "${po_crds[@]}"; do cp "$po_module/example/prometheus-operator-crd/$f" "$work/po/crds/"; done
  rm -rf "$po_dir"
  mv "$work/po" "$po_dir"
  echo "install-test-deps: prometheus-operator $po_version CRDs ready: $po_dir/crds"
fi
