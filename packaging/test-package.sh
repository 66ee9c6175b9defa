#!/usr/bin/env bash
# CI test of the Debian package (run as root): build it, lint it, install it with dpkg -i, use
# the installed mizar, check the unit, reinstall and upgrade it keeping the store and the
# conffile, remove it (store kept), purge it (store gone), and check that nothing else is left.
#
#     bash packaging/test-package.sh
#
# Installs what it needs (scripts/setup-debian.sh, lintian, dpkg-dev, cargo-deb); those tools
# stay installed. Everything else it makes is undone on exit, failed or not: the package is
# purged, its namespace, bpffs mount and temporary files removed, policy-rc.d restored.
# It refuses to run where mizar is installed or has state (it would purge it).
#
# Never touches the machine's own interfaces: the service is not started once the host has a
# store (a policy-rc.d forbids the maintainer scripts to when systemd runs), and the unit's
# start/reload/stop commands run in a network namespace this script creates, on a veth pair
# that exists only there. Ends with the plain line 'N passed, N failed'.
# Checks run commands as bash -c '...' with positional arguments: single quotes are meant.
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.cargo/bin:$PATH"
# The installed mizar must use its defaults and /etc/mizar/mizar.env, not the caller's.
unset MIZAR_STATE_DIR MIZAR_PIN_DIR

STATE=/var/lib/mizar
ETC=/etc/mizar
UNIT=/usr/lib/systemd/system/mizar.service
METRICS_UNIT=/usr/lib/systemd/system/mizar-metrics.service
DEFAULT_PINS=/sys/fs/bpf/mizar
NETNS="mzpkgtest$$"
BPFFS="/run/mizar-pkgtest-$$"
POLICY=/usr/sbin/policy-rc.d
UNDERLAY=mzpkgu0 # exists only inside $NETNS

passed=0
failed=0
skipped=0
installed_by_us=false
policy_backup=""
policy_ours=false
work=$(mktemp -d)

say() { printf '\n== %s\n' "$*"; }
pass() {
  passed=$((passed + 1))
  echo "ok: $1"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL: $1" >&2
}
# check DESCRIPTION COMMAND...: one counted check; the run goes on after a failure.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# require DESCRIPTION COMMAND...: a counted check that the rest depends on; stops the run.
require() {
  local what=$1
  shift
  if "$@"; then
    pass "$what"
  else
    fail "$what"
    echo "test-package: cannot go on after this failure" >&2
    exit 1
  fi
}
systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

cleanup() {
  local rc=$?
  set +e
  say "cleanup"
  if $installed_by_us && dpkg-query -W -f='${db:Status-Abbrev}' mizar 2>/dev/null | grep -qv '^un'; then
    dpkg -P mizar >/dev/null 2>&1 || echo "cleanup: dpkg -P mizar failed" >&2
  fi
  if $installed_by_us; then
    # The package's state only: the preflight made sure none was there before the test.
    rm -rf "$STATE" "$ETC"
    rmdir "$DEFAULT_PINS" 2>/dev/null
  fi
  if ip netns list 2>/dev/null | grep -qw "$NETNS"; then ip netns del "$NETNS"; fi
  if mountpoint -q "$BPFFS" 2>/dev/null; then umount "$BPFFS"; fi
  rmdir "$BPFFS" 2>/dev/null
  if $policy_ours; then
    rm -f "$POLICY"
    if [ -n "$policy_backup" ]; then mv "$policy_backup" "$POLICY"; fi
  fi
  if systemd_running; then
    systemctl daemon-reload 2>/dev/null
    systemctl reset-failed mizar.service 2>/dev/null
  fi
  rm -rf "$work"
  if ((rc != 0)) && ((failed == 0)); then
    failed=1
    echo "FAIL: the test stopped on an unexpected error (exit $rc)" >&2
  fi
  echo
  if ((skipped)); then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
  if ((failed)) && ((rc == 0)); then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "test-package: line $LINENO: failed: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

# Every path named *mizar* where a package or its maintainer scripts could leave something
# (dpkg's database, systemd enablement, state, config, docs), for a before/after comparison.
# /run is left out: the workspace's tests keep their own bpffs mounts there.
mizar_paths() {
  find /etc /usr /var /opt /srv -xdev -name '*mizar*' 2>/dev/null | LC_ALL=C sort
  [ -e "$DEFAULT_PINS" ] && echo "$DEFAULT_PINS"
  true
}
# For each path of a package listing: whether it exists, and what it is.
existence() {
  while IFS= read -r p; do
    if [ -L "$p" ]; then echo "link $p"; elif [ -d "$p" ]; then echo "dir $p"; elif [ -e "$p" ]; then echo "file $p"; else echo "absent $p"; fi
  done
}
deb_paths() { dpkg-deb --fsys-tarfile "$1" | tar -t | sed 's|^\./|/|; s|/$||' | grep -v '^/\?$'; }
status_abbrev() { dpkg-query -W -f='${db:Status-Abbrev}' mizar 2>/dev/null | tr -d ' ' || true; }
installed_version() { dpkg-query -W -f='${Version}' mizar 2>/dev/null; }

say "preflight"
if [ "$(id -u)" != 0 ]; then
  fail "run as root (dpkg -i, namespaces, bpffs)"
  exit 1
fi
leftovers=$(
  if [ -n "$(status_abbrev)" ] && [ "$(status_abbrev)" != un ]; then echo "package mizar ($(status_abbrev))"; fi
  for p in "$STATE" "$ETC" "$DEFAULT_PINS" "$UNIT" /usr/bin/mizar; do [ -e "$p" ] && echo "$p"; done
  true
)
if [ -n "$leftovers" ]; then
  fail "mizar is installed or has state on this machine; this test would purge it:"
  echo "$leftovers" | sed 's/^/    /' >&2
  echo "  run it on a CI machine, or remove these first (dpkg -P mizar)" >&2
  exit 1
fi
pass "no mizar package or state on this machine before the test"
installed_by_us=true

say "tools"
t0=$SECONDS
./scripts/setup-debian.sh
need=()
for pkg in lintian dpkg-dev binutils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "tools ready in $((SECONDS - t0)) s"

say "build"
t0=$SECONDS
require "packaging/build-deb.sh builds the package" \
  bash -c 'packaging/build-deb.sh >"$1/build.log" 2>&1 || { tail -n 40 "$1/build.log"; false; }' _ "$work"
deb=$(tail -n 1 "$work/build.log")
echo "built $deb in $((SECONDS - t0)) s"
t0=$SECONDS
require "the same build, revision 2 (for the upgrade)" \
  bash -c 'packaging/build-deb.sh --deb-revision 2 >"$1/build2.log" 2>&1 || { tail -n 40 "$1/build2.log"; false; }' _ "$work"
deb2=$(tail -n 1 "$work/build2.log")
echo "built $deb2 in $((SECONDS - t0)) s"
version=$(dpkg-deb -f "$deb" Version)
version2=$(dpkg-deb -f "$deb2" Version)
check "the two packages differ in version only ($version, $version2)" \
  bash -c '[ "$1" != "$2" ] && dpkg --compare-versions "$2" gt "$1"' _ "$version" "$version2"

say "lint"
lintian_clean() {
  lintian --fail-on error,warning -I --pedantic "$deb" 2>&1 | grep -v '^running with root privileges' | tee "$work/lintian.log"
  local rc=${PIPESTATUS[0]}
  ((rc == 0)) && ! grep -q '^[EW]:' "$work/lintian.log"
}
check "lintian: no error or warning (overrides in packaging/lintian-overrides)" lintian_clean
check "control: Depends is \$auto (libc6) and iproute2 (ep add --netns), nothing else" \
  bash -c 'deps=$(dpkg-deb -f "$1" Depends | tr -d " " | tr , "\n" | sort | paste -sd,)
           [[ "$deps" =~ ^iproute2,libc6\(\>=[0-9.]+\)$ ]]' _ "$deb"
check "conffiles: /etc/mizar/mizar.env" \
  bash -c '[ "$(dpkg-deb -I "$1" conffiles)" = /etc/mizar/mizar.env ]' _ "$deb"

# Snapshots of the machine before anything is installed: compared after the purge.
mizar_paths >"$work/paths.before"
deb_paths "$deb" | existence >"$work/listing.before"

if systemd_running; then
  # The package's postinst starts (and on upgrade restarts) mizar.service, as debhelper's do;
  # once this test has made a store, that would be `mizar up` on this machine. Forbid it.
  if [ -e "$POLICY" ]; then
    policy_backup="$work/policy-rc.d.orig"
    cp -p "$POLICY" "$policy_backup"
  fi
  policy_ours=true
  printf '#!/bin/sh\n# test-package.sh: no service starts during the test\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
fi

say "install ($version)"
require "dpkg -i installs it" dpkg -i "$deb"
check "dpkg: installed ($(status_abbrev))" test "$(status_abbrev)" = ii
check "/usr/bin/mizar --version says the upstream version of ${version}" \
  bash -c '[ "$(/usr/bin/mizar --version)" = "mizar ${1%-*}" ]' _ "$version"
check "dpkg --verify: every installed file matches md5sums" bash -c '[ -z "$(dpkg --verify mizar)" ]'
check "every path of dpkg -L exists" bash -c 'dpkg -L mizar | while IFS= read -r p; do [ -e "$p" ] || { echo "missing: $p"; exit 1; }; done'
check "state directory $STATE created by the package, mode 750, empty" \
  bash -c '[ "$(stat -c %a "$1")" = 750 ] && [ -z "$(ls -A "$1")" ]' _ "$STATE"
check "man pages: mizar(1) and one per subcommand" \
  bash -c 'for p in mizar mizar-init mizar-tui mizar-metrics; do [ -e "/usr/share/man/man1/$p.1.gz" ] || exit 1; done &&
           zcat /usr/share/man/man1/mizar-up.1.gz | grep -q "^\.TH" && zcat /usr/share/man/man1/mizar-metrics.1.gz | grep -q "fB.-.-listen"'
check "bash completion registers mizar" \
  bash -c 'source /usr/share/bash-completion/completions/mizar && complete -p mizar >/dev/null'
check "zsh and fish completions installed" \
  test -s /usr/share/zsh/vendor-completions/_mizar -a -s /usr/share/fish/vendor_completions.d/mizar.fish
check "mizar.service enabled (multi-user.target.wants)" \
  test -L /etc/systemd/system/multi-user.target.wants/mizar.service
check "mizar-metrics.service installed, not enabled (off by default)" \
  bash -c '[ -s "$1" ] && [ ! -e /etc/systemd/system/multi-user.target.wants/mizar-metrics.service ]' _ "$METRICS_UNIT"

say "the unit"
if command -v systemd-analyze >/dev/null; then
  man_opt=()
  command -v man >/dev/null || man_opt=(--man=no)
  check "systemd-analyze verify $UNIT: no error, no warning" \
    bash -c 'out=$(systemd-analyze verify "$@" "$0" 2>&1); rc=$?; echo "$out"; [ $rc = 0 ] && [ -z "$out" ]' \
    "$UNIT" "${man_opt[@]}"
  check "systemd-analyze verify $METRICS_UNIT: no error, no warning" \
    bash -c 'out=$(systemd-analyze verify "$@" "$0" 2>&1); rc=$?; echo "$out"; [ $rc = 0 ] && [ -z "$out" ]' \
    "$METRICS_UNIT" "${man_opt[@]}"
  # It checks Documentation= by running man, and man-db keeps the pages it formats in
  # /var/cache/man: drop those (made by this test, not by the package).
  # (man-db gives them the mtime of the page, so they are told apart by the snapshot.)
  find /var/cache/man -name 'mizar*' 2>/dev/null | while IFS= read -r p; do
    grep -qxF "$p" "$work/paths.before" || rm -f "$p"
  done
else
  skipped=$((skipped + 1))
  echo "SKIPPED: systemd-analyze is not installed here, so the unit file is NOT verified" >&2
  echo "SKIPPED: (apt-get install systemd to check it)" >&2
fi
unit_get() { sed -n "s/^$1=//p" "$UNIT"; }
check "unit: Type=oneshot, RemainAfterExit=yes, after and wanting network-online.target" \
  bash -c '[ "$(sed -n "s/^Type=//p" "$1")" = oneshot ] && [ "$(sed -n "s/^RemainAfterExit=//p" "$1")" = yes ] &&
           [ "$(sed -n "s/^After=//p" "$1")" = network-online.target ] && [ "$(sed -n "s/^Wants=//p" "$1")" = network-online.target ]' _ "$UNIT"
check "unit: EnvironmentFile is the conffile" test "$(unit_get EnvironmentFile)" = -/etc/mizar/mizar.env
# unit_run KEY ENVFILE [PREFIX...]: the unit's command KEY as systemd runs it (an environment
# of the file's variables only; $$ is $), behind PREFIX (e.g. ip netns exec NS).
unit_run() {
  local key=$1 envfile=$2 line
  shift 2
  line=$(unit_get "$key" | sed 's/\$\$/$/g')
  [ -n "$line" ] || return 1
  "$@" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c 'set -a; . "$1"; set +a; eval "$0"' "$line" "$envfile"
}
unit_skips() { ! unit_run ExecCondition /etc/mizar/mizar.env; }
check "unit: ExecCondition skips a host without a store" unit_skips
if systemd_running; then
  check "systemctl: enabled" bash -c '[ "$(systemctl is-enabled mizar.service)" = enabled ]'
  systemctl start mizar.service || true
  check "systemctl start without a store: skipped quietly (inactive, not failed)" \
    bash -c '[ "$(systemctl show -P ActiveState mizar.service)" = inactive ] && ! systemctl is-failed --quiet mizar.service'
else
  echo "note: systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null)): the unit is checked through its" \
    "files and its commands are run directly below; systemctl is not used"
fi

say "use the installed mizar"
require "mizar init (default state dir $STATE)" \
  /usr/bin/mizar init --name pkgtest --ip 192.0.2.1 --mac 02:00:00:00:00:01 --interface "$UNDERLAY"
check "the store is $STATE/mizar.db" test -s "$STATE/mizar.db"
check "mizar status: this host, data plane down" \
  bash -c 'out=$(/usr/bin/mizar status) && echo "$out" && grep -q "^this host: pkgtest" <<<"$out" && grep -q "^data plane: down" <<<"$out"'
check "mizar status --json" bash -c 'out=$(/usr/bin/mizar status --json) && grep -q "\"this_host\": *\"pkgtest\"" <<<"$out"'
check "mizar vpc add (something more in the store)" /usr/bin/mizar vpc add blue --vni 100 --cidr 10.1.0.0/16
/usr/bin/mizar export >"$work/export.before"
check "unit: ExecCondition passes once the host has a store" unit_run ExecCondition /etc/mizar/mizar.env

# The unit's ExecStart/ExecReload/ExecStop, from the installed binary with the installed store,
# in a namespace of our own whose only interfaces are a veth pair named as the store's underlay.
# Pins go to a bpffs mounted under /run in the root mount namespace (ip netns exec remounts
# /sys, where mizar would refuse to mount one).
mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"
ip netns add "$NETNS"
ip netns exec "$NETNS" ip link add "$UNDERLAY" type veth peer name mzpkgu1
ip netns exec "$NETNS" ip link set "$UNDERLAY" up
ip netns exec "$NETNS" ip link set mzpkgu1 up
{ cat /etc/mizar/mizar.env; echo "MIZAR_PIN_DIR=$BPFFS/pins"; } >"$work/ns.env"
ns_unit() { unit_run "$1" "$work/ns.env" ip netns exec "$NETNS"; }
xdp_on_underlay() {
  local link
  link=$(ip netns exec "$NETNS" ip -d link show "$UNDERLAY") && grep -q 'prog/xdp' <<<"$link"
}
restart_safe() {
  for step in ExecStart ExecStart ExecReload; do
    ns_unit "$step" || return 1
  done
  local status
  status=$(ip netns exec "$NETNS" env MIZAR_PIN_DIR="$BPFFS/pins" /usr/bin/mizar status --json) &&
    grep -q '"up": *true' <<<"$status" || return 1
  xdp_on_underlay || return 1
  for step in ExecStop ExecStop ExecStart ExecStop; do
    ns_unit "$step" || return 1
  done
  ! xdp_on_underlay && [ -z "$(ls -A "$BPFFS/pins" 2>/dev/null)" ]
}
check "unit commands restart-safe in a private netns (start, start, reload, stop, stop, start, stop)" restart_safe
# mizar-metrics.service's ExecStart beside a data plane that mizar.service brought up, in the
# same namespace; scraped with curl there, then ended with SIGTERM (exit 0).
metrics_served() {
  local served=1 job rc p
  ip netns exec "$NETNS" ip link set lo up
  ns_unit ExecStart || return 1
  UNIT=$METRICS_UNIT ns_unit ExecStart >"$work/metrics.log" 2>&1 &
  job=$!
  for _ in $(seq 100); do
    if ip netns exec "$NETNS" curl -sf http://127.0.0.1:9830/metrics >"$work/metrics.txt" 2>/dev/null &&
      grep -q '^mizar_dataplane_up 1$' "$work/metrics.txt" &&
      grep -q "^mizar_xdp_attachment_info{role=\"transit\",interface=\"$UNDERLAY\"" "$work/metrics.txt"; then
      served=0
      break
    fi
    sleep 0.2
  done
  for p in $(ip netns pids "$NETNS"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mizar ] && kill -TERM "$p"
  done
  wait "$job"
  rc=$?
  cat "$work/metrics.log"
  ns_unit ExecStop || return 1
  [ "$served" = 0 ] && [ "$rc" = 0 ]
}
check "mizar-metrics.service's command serves the live data plane's metrics, ends on SIGTERM" metrics_served

say "reinstall over itself ($version)"
echo "# local edit by test-package.sh" >>"$ETC/mizar.env"
check "dpkg -i of the same version" dpkg -i "$deb"
check "the store survived the reinstall" bash -c '/usr/bin/mizar export | cmp -s - "$1"' _ "$work/export.before"

say "upgrade ($version -> $version2)"
check "dpkg -i of $version2" dpkg -i "$deb2"
check "dpkg: $version2 installed" test "$(installed_version)" = "$version2"
check "the store survived the upgrade (export unchanged)" bash -c '/usr/bin/mizar export | cmp -s - "$1"' _ "$work/export.before"
check "mizar status after the upgrade" bash -c 'out=$(/usr/bin/mizar status) && grep -q "^this host: pkgtest" <<<"$out"'
check "the local edit of the conffile survived (no prompt)" grep -q "local edit by test-package.sh" "$ETC/mizar.env"
check "dpkg --verify after the upgrade" bash -c '[ -z "$(dpkg --verify mizar | grep -v " c /etc/mizar/mizar.env$")" ]'
if systemd_running; then
  check "systemctl: still enabled and not running after the upgrade" \
    bash -c '[ "$(systemctl is-enabled mizar.service)" = enabled ] && [ "$(systemctl show -P ActiveState mizar.service)" = inactive ]'
fi

say "remove (dpkg -r)"
dpkg -L mizar >"$work/dpkg-L"
check "dpkg -r" dpkg -r mizar
check "dpkg: removed, config files kept ($(status_abbrev))" test "$(status_abbrev)" = rc
check "the store is kept ($STATE/mizar.db)" test -s "$STATE/mizar.db"
check "the conffile is kept, with its local edit" grep -q "local edit by test-package.sh" "$ETC/mizar.env"
check "every other file of dpkg -L is gone" \
  bash -c 'while IFS= read -r p; do [ "$p" = /etc/mizar/mizar.env ] && continue; [ -d "$p" ] && continue;
           [ -e "$p" ] || [ -L "$p" ] && { echo "left: $p"; exit 1; }; done <"$1"; true' _ "$work/dpkg-L"
check "/usr/bin/mizar is gone" test ! -e /usr/bin/mizar

say "purge (dpkg -P)"
check "dpkg -P" dpkg -P mizar
check "dpkg: not installed ($(status_abbrev))" bash -c '[ -z "$1" ] || [ "$1" = un ]' _ "$(status_abbrev)"
check "the store is gone ($STATE)" test ! -e "$STATE"
check "the configuration is gone ($ETC)" test ! -e "$ETC"
mizar_paths >"$work/paths.after"
check "no path named *mizar* left or added (dpkg database, systemd links, state, config)" \
  diff "$work/paths.before" "$work/paths.after"
deb_paths "$deb" | existence >"$work/listing.after"
check "every path the package shipped is as it was before the install (dirs included)" \
  diff "$work/listing.before" "$work/listing.after"
