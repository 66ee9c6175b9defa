#!/usr/bin/env bash
# Times `mizar apply` of 1,000 / 10,000 / 100,000 endpoints with the data plane up (store and
# maps), a no-op re-apply, and one `mizar ep add` / `mizar ep del` (the median of five, and the
# first add after the apply on its own), inside a network namespace this script makes and
# removes. Every figure includes `ip netns exec` (`netns exec` column: its own cost). Run as root after `cargo build --release -p mizar`; figures go in BENCHMARKS.md.
set -euo pipefail
mizar=${MIZAR:-$(cd "$(dirname "$0")/.." && pwd)/target/release/mizar}
root=/run/mizar-bench-apply
ns=mzbench-apply-$$
work=$(mktemp -d)   # documents and stores; bpffs holds only pins
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  umount "$root" 2>/dev/null || true
  rm -rf "$root" "$work"
}
trap cleanup EXIT
mkdir -p "$root" && mount -t bpf bpf "$root"   # in the root mount namespace, so pins survive
ip netns add "$ns"
ip -n "$ns" link add ul0 type veth peer name ul1
ip -n "$ns" link set ul0 up

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }

topology() { # $1 = endpoints, all on the remote host h2
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
print("this-host: gw1")
print("hosts:")
print("- {name: gw1, ip: 192.168.77.1, mac: '02:00:c0:a8:4d:01', interface: ul0}")
print("- {name: h2, ip: 192.168.77.2, mac: '02:00:c0:a8:4d:02'}")
print("vpcs:")
print("- name: blue\n  vni: 100\n  cidr: 10.0.0.0/8\n  dividers: [gw1]\n  networks:")
print("  - name: big\n    cidr: 10.0.0.0/12\n    bouncers: [gw1]\n    endpoints:")
for i in range(n):
    a = i + 10
    ip = f"10.{a >> 16 & 15}.{a >> 8 & 255}.{a & 255}"
    mac = f"02:00:0a:{a >> 16 & 255:02x}:{a >> 8 & 255:02x}:{a & 255:02x}"
    print(f"    - {{name: ep{i}, ip: {ip}, mac: '{mac}', host: h2}}")
PY
}

median() { sort -n | sed -n 3p; }   # of five

printf '%-10s %11s %11s %15s %12s %12s %16s\n' endpoints "apply (ms)" "no-op (ms)" \
  "1st ep add (ms)" "ep add (ms)" "ep del (ms)" "netns exec (ms)"
for n in 1000 10000 100000; do
  dir=$work/$n
  mkdir -p "$dir"
  export MIZAR_STATE_DIR=$dir/state MIZAR_PIN_DIR=$root/$n
  topology "$n" >"$dir.yaml"
  topology 0 >"$dir.empty.yaml"
  ip netns exec "$ns" "$mizar" apply -f "$dir.empty.yaml" >/dev/null
  ip netns exec "$ns" "$mizar" up >/dev/null
  apply=$(ms ip netns exec "$ns" "$mizar" apply -f "$dir.yaml")
  noop=$(ms ip netns exec "$ns" "$mizar" apply -f "$dir.yaml")
  first=$(ms ip netns exec "$ns" "$mizar" ep add blue extra --ip 10.15.255.1 --mac 02:00:0a:0f:ff:01 --host h2)
  adds=() dels=()
  for i in 2 3 4 5 6; do
    adds+=("$(ms ip netns exec "$ns" "$mizar" ep add blue extra$i --ip 10.15.255.$i --mac 02:00:0a:0f:ff:0$i --host h2)")
  done
  for i in 2 3 4 5 6; do
    dels+=("$(ms ip netns exec "$ns" "$mizar" ep del blue extra$i)")
  done
  add=$(printf '%s\n' "${adds[@]}" | median)
  del=$(printf '%s\n' "${dels[@]}" | median)
  exec_ms=$(ms ip netns exec "$ns" true)
  printf '%-10s %11s %11s %15s %12s %12s %16s\n' "$n" "$apply" "$noop" "$first" "$add" "$del" "$exec_ms"
  ip netns exec "$ns" "$mizar" down >/dev/null
done
