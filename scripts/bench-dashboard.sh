#!/usr/bin/env bash
# What watching a large fabric costs, through the real binary: a store of ENDPOINTS endpoints
# (default 100,000; LOCAL of them, default 1,000, hosted here on veth pairs, the rest on
# another host) with the data plane up, inside a network namespace this script makes and
# removes. It measures:
#   - the sampler's cost per tick (what `mizar metrics` reports as mizar_sample_duration_seconds,
#     the same FabricSource `mizar tui` samples with) at a 100 ms period;
#   - /metrics scrape time (curl's time_total) for an encoding and for a cached one;
#   - resident memory of `mizar metrics` and of `mizar tui` (in tmux) at the start and after
#     SOAK seconds (default 120) of sampling at 100 ms;
#   - with CHURN=S (default 0: none), an endpoint added and deleted every S seconds of the soak,
#     so both samplers rebuild their tables from a changed store while memory is traced;
#   - `mizar bench` (ns/packet and ratio to the floor) alone, then with `mizar tui --period
#     100ms` running against this fabric (BENCH=0 skips it, e.g. while the machine is busy).
# Frame build time is measured without a kernel: cargo run --release -p mizar-tui --example
# frame_scale. Run as root after `cargo build --release -p mizar`; figures go in BENCHMARKS.md.
set -euo pipefail
mizar=${MIZAR:-$(cd "$(dirname "$0")/.." && pwd)/target/release/mizar}
endpoints=${ENDPOINTS:-100000}
local_eps=${LOCAL:-1000}
soak=${SOAK:-120}
churn=${CHURN:-0}
bench=${BENCH:-1}
root=/run/mizar-bench-dashboard
ns=mzbench-dash-$$
session=mzbench-dash-$$
work=$(mktemp -d)
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [ -n "${metrics_pid:-}" ] && kill "$metrics_pid" 2>/dev/null || true
  ip netns exec "$ns" "$mizar" down >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  umount "$root" 2>/dev/null || true
  rm -rf "$root" "$work"
}
trap cleanup EXIT
mkdir -p "$root" && mount -t bpf bpf "$root"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add ul0 type veth peer name ul1
ip -n "$ns" link set ul0 up
for ((i = 0; i < local_eps; i++)); do
  echo "link add d$i type veth peer name p$i"
  echo "link set d$i up"
  echo "link set p$i up"
done | ip -n "$ns" -batch -

export MIZAR_STATE_DIR=$work/state MIZAR_PIN_DIR=$root/pins
python3 - "$endpoints" "$local_eps" >"$work/fabric.yaml" <<'PY'
import sys
n, local = int(sys.argv[1]), int(sys.argv[2])
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
    where = f"host: gw1, veth: d{i}" if i < local else "host: h2"
    print(f"    - {{name: ep{i}, ip: {ip}, mac: '{mac}', {where}}}")
PY
in_ns() { ip netns exec "$ns" "$@"; }
t0=$(date +%s%N)
in_ns "$mizar" apply -f "$work/fabric.yaml" >/dev/null
in_ns "$mizar" up >/dev/null
echo "fabric: $endpoints endpoints, $local_eps hosted here; apply + up in $((($(date +%s%N) - t0) / 1000000)) ms"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores, kernel $(uname -r)"

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# The exporter; its stdout's first line says where it listens.
ip netns exec "$ns" "$mizar" metrics --listen 127.0.0.1:9830 --period 100ms >"$work/metrics.out" 2>&1 &
metrics_pid=$! # ip netns exec execs mizar: this is mizar's pid
url=http://127.0.0.1:9830/metrics
for _ in $(seq 100); do in_ns curl -sf -o /dev/null "$url" && break; sleep 0.2; done
rss_metrics_start=$(rss "$metrics_pid")
costs=() encodes=() cached=()
for _ in $(seq 30); do
  sleep 0.25 # past the period: a new sample, so the next scrape encodes it
  encodes+=("$(in_ns curl -s -o "$work/scrape" -w '%{time_total}' "$url")")
  cached+=("$(in_ns curl -s -o /dev/null -w '%{time_total}' "$url")")
  costs+=("$(sed -n 's/^mizar_sample_duration_seconds //p' "$work/scrape")")
done
series=$(grep -vc '^#' "$work/scrape")
bytes=$(wc -c <"$work/scrape")
ms() { awk '{printf "%.2f", $1 * 1000}'; }
echo "sampler cost per tick (median of 30): $(printf '%s\n' "${costs[@]}" | median | ms) ms"
echo "scrape, encoding a new sample (median of 30): $(printf '%s\n' "${encodes[@]}" | median | ms) ms;" \
  "cached: $(printf '%s\n' "${cached[@]}" | median | ms) ms; $series series, $bytes bytes"

# The dashboard at 100 ms on the same fabric, in tmux.
tmux new-session -d -s "$session" -x 160 -y 48 \
  "ip netns exec $ns env MIZAR_STATE_DIR=$MIZAR_STATE_DIR MIZAR_PIN_DIR=$MIZAR_PIN_DIR $mizar tui --period 100ms"
sleep 3
tui_pid=$(pgrep -f "^$mizar tui --period 100ms" | head -1) # mizar itself, not the shell
rss_tui_start=$(rss "$tui_pid")
churning=""
((churn > 0)) && churning=", an endpoint added and deleted every $churn s"
echo "soak: ${soak} s of sampling at 100 ms (metrics and tui)$churning"
changes=0
start=$SECONDS
next_change=$churn
for ((t = 10; t <= soak; t += 10)); do
  while ((SECONDS - start < t)); do
    if ((churn > 0 && SECONDS - start >= next_change)); then
      in_ns "$mizar" ep add blue churn --ip 10.15.255.200 --mac 02:00:0a:0f:ff:c8 --host h2 >/dev/null
      in_ns "$mizar" ep del blue churn >/dev/null
      changes=$((changes + 2))
      next_change=$((next_change + churn))
    fi
    sleep 1
  done
  echo "  after ${t} s: mizar metrics $(rss "$metrics_pid") KiB, mizar tui $(rss "$tui_pid") KiB${churning:+, $changes store changes}"
done
echo "resident memory: mizar metrics ${rss_metrics_start} -> $(rss "$metrics_pid") KiB;" \
  "mizar tui ${rss_tui_start} -> $(rss "$tui_pid") KiB"
kill "$metrics_pid"
wait "$metrics_pid" 2>/dev/null || true
metrics_pid=

cat >"$work/summarize.py" <<'PY'
import json, sys
r = json.load(sys.stdin)
print(f"floor {r['floor_ns']:.1f} ns")
for p in r["paths"]:
    ns = p["net_ns"] if p["net_ns"] is not None else p["ns"]
    ratio = p["net_ratio"] if p["net_ratio"] is not None else p["ratio"]
    print(f"{p['id']:<28} {ns:>8.1f} ns  ratio {ratio:.2f}")
PY
summarize() { python3 "$work/summarize.py"; } # bench JSON -> ns/packet (net of the wrapper), ratio
if [ "$bench" = 0 ]; then
  exit 0
fi
echo "mizar bench with mizar tui --period 100ms running:"
"$mizar" bench --json | summarize | tee "$work/with"
tmux kill-session -t "$session"
sleep 1
echo "mizar bench alone:"
"$mizar" bench --json | summarize | tee "$work/without"
