#!/usr/bin/env bash
# Installs the OS packages the test suite needs on Debian: a real etcd (snapshot source), Ceph RADOS Gateway
# (a real S3), curl (the README's examples run as written). Skips apt entirely when all are present.
set -euo pipefail

packages=(etcd-server etcd-client radosgw ceph-mon ceph-osd curl ca-certificates)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: all OS packages present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"
