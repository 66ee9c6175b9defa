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
  tmux procps           # drive `mizar tui` in its end-to-end test (tmux; pgrep and kill)
  python3-prometheus-client  # the Prometheus project's parsers check `mizar metrics` output
  libclang-dev          # bindgen reads the shared ABI header
  pkg-config
  gcc libc6-dev         # the linker Rust uses (cc)
  curl ca-certificates  # rustup, when no Rust toolchain is installed; the metrics tests' scrapes
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

# Rust: Debian 12's own rustc (1.63) is too old for the workspace (rust-version 1.95), so a
# machine without cargo gets rustup's stable toolchain. rustup puts it in ~/.cargo/bin, which the
# shell that ran this script does not search: link the tools into /usr/local/bin so that
# `./scripts/setup-debian.sh && cargo ...` works in one line.
if ! command -v cargo >/dev/null 2>&1; then
  if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --no-modify-path --profile minimal --default-toolchain stable -c rustfmt,clippy
  fi
  for tool in cargo rustc rustdoc rustup rustfmt cargo-fmt cargo-clippy clippy-driver; do
    if [ -e "$HOME/.cargo/bin/$tool" ]; then
      ln -sf "$HOME/.cargo/bin/$tool" "/usr/local/bin/$tool"
    fi
  done
fi
