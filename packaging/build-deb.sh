#!/usr/bin/env bash
# Builds the mizar Debian package from the workspace:
#
#     packaging/build-deb.sh            # -> target/debian/mizar_<version>_<arch>.deb
#
# 1. installs cargo-deb (pinned) when missing;
# 2. builds the release binary (XDP objects embedded) in target/deb-build/, with Debian's
#    hardening flags for the C compiled into it (SQLite): a target directory of its own, so
#    that these flags never make other release builds rebuild;
# 3. stages what that binary generates from its CLI definitions, so they cannot drift from it:
#    man pages (gzipped) and bash/zsh/fish completions;
# 4. runs cargo-deb with [package.metadata.deb] of appliance/Cargo.toml, then adds the md5sums
#    control file (dpkg --verify, debsums) that cargo-deb does not write.
#
# Needs what scripts/setup-debian.sh installs, plus dpkg-dev (dpkg-shlibdeps, dpkg-buildflags).
# Extra arguments go to cargo-deb, e.g. --deb-revision 2. The last line printed is the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
export PATH="$HOME/.cargo/bin:$PATH"

for tool in dpkg-shlibdeps dpkg-buildflags dpkg-deb strip gzip md5sum; do
  command -v "$tool" >/dev/null || {
    echo "build-deb: $tool is missing: apt-get install dpkg-dev binutils" >&2
    exit 1
  }
done
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# The workspace's target directory (CARGO_TARGET_DIR or a cargo config may move it).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
export CARGO_TARGET_DIR="$target_dir/deb-build"
out_dir="$target_dir/debian"

# cc (SQLite's C) reads CFLAGS; it has no CPPFLAGS of its own, so the fortify define goes there.
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
export CFLAGS
cargo build --release --locked -p mizar >&2
bin="$CARGO_TARGET_DIR/release/mizar"

# The changelog's latest entry must be the version being packaged.
version=$("$bin" --version | awk '{print $2}')
changelog_version=$(sed -n '1s/^mizar (\([^)-]*\).*/\1/p' packaging/debian/changelog)
if [ "$changelog_version" != "$version" ]; then
  echo "build-deb: packaging/debian/changelog starts with $changelog_version, the crate is $version:" >&2
  echo "  add an entry for $version at the top of packaging/debian/changelog" >&2
  exit 1
fi

# cargo-deb reads these as target/release/mizar-deb/... (see the assets).
stage="$CARGO_TARGET_DIR/release/mizar-deb"
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions"
"$bin" man --out "$stage/man"
gzip -9n "$stage"/man/*.1
"$bin" completions bash >"$stage/completions/mizar"
"$bin" completions zsh >"$stage/completions/_mizar"
"$bin" completions fish >"$stage/completions/mizar.fish"

# --no-build: built above (--locked, flags); --strip: Debian ships stripped binaries (the
# release profile keeps line tables for development backtraces).
deb=$(cargo deb -p mizar --no-build --strip -o "$out_dir/" "$@" | tail -n 1)

# md5sums, as dh_md5sums writes it: every file but conffiles, relative paths, sorted.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -R "$deb" "$work/root"
(
  cd "$work/root"
  find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum
) >"$work/root/DEBIAN/md5sums"
chmod 644 "$work/root/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$work/root" "$deb" >&2
echo "$deb"
