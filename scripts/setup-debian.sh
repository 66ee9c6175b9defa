#!/usr/bin/env bash
# Installs what building and testing mizar needs on a fresh Debian 12 machine (run as root).
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(
  clang llvm            # compile the XDP programs (clang -target bpf)
  libbpf-dev            # bpf_helpers.h, bpf_endian.h
  linux-libc-dev        # linux/bpf.h, linux/if_ether.h, ...
  bpftool               # inspect pinned programs and maps when debugging
  iproute2 ethtool      # namespaces, veths, offload settings for tests and the lab
  iputils-ping tcpdump tshark  # end-to-end tests and capture checks
  libclang-dev          # bindgen reads the shared ABI header
  pkg-config
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
