#!/usr/bin/env bash
# Fetches the runtime files of pullguard's OCI image (glibc, libstdc++, libgcc, nsenter and chroot with their
# libraries) for one architecture from Debian's current stable release, unpacked with `dpkg -x` into
# a cache folder, without installing anything into the system. Prints the unpacked root on stdout.
#
#   scripts/fetch-image-runtime.sh amd64|arm64
#   PULLGUARD_IMAGE_RUNTIME_DIR  cache folder (default: ~/.cache/pullguard/image-runtime-<arch>-<hash>)
#
# Why trixie (Debian 13): the Node 24 binary inside dist/pullguard needs GLIBC_2.28 and GLIBCXX_3.4.21
# (`objdump -T`), so any Debian since buster would run it; the current stable gets security updates,
# and a pinned stable build does not move under us the way sid does. trixie-security comes first so a
# glibc security fix is taken as soon as it is pinned here.
set -euo pipefail

arch=${1:?usage: fetch-image-runtime.sh amd64|arm64}
case "$arch" in amd64|arm64) ;; *) echo "fetch-image-runtime: unsupported architecture $arch" >&2; exit 2 ;; esac

# NAME=VERSION: the image's runtime closure. nsenter (util-linux) links libselinux and libpcre2; chroot
# (coreutils) only libc. The installer runs host binaries with them (src/node/host.ts);
# gcc-14-base carries the copyright file of libgcc-s1 and libstdc++6.
PACKAGES=(libc6=2.41-12+deb13u5 libgcc-s1=14.2.0-19 "libstdc++6=14.2.0-19" gcc-14-base=14.2.0-19 util-linux=2.41.5-0+deb13u1
  libselinux1=3.8.1-1 libpcre2-8-0=10.46-1~deb13u3 coreutils=9.7-3)
STAMP="v1:$arch:${PACKAGES[*]}"

dir=${PULLGUARD_IMAGE_RUNTIME_DIR:-${HOME:-/root}/.cache/pullguard/image-runtime-$arch-$(sha256sum <<<"$STAMP" | cut -c1-12)}
if [[ -f "$dir/stamp" && "$(cat "$dir/stamp")" == "$STAMP" ]]; then
  echo "$dir/root"; exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs" "$dir/root"
cat >"$dir/apt/sources.list" <<LIST
deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main
deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-updates main
LIST
apt_opts=(
  -o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
  -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q
)
apt-get "${apt_opts[@]}" update >&2
for p in "${PACKAGES[@]}"; do
  if ! (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "${p%%=*}:$arch=${p#*=}" >&2); then
    echo "fetch-image-runtime: $p is no longer in trixie; taking the current ${p%%=*}" >&2
    (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "${p%%=*}:$arch" >&2)
  fi
done
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
# The package list with exact versions, for the image's provenance.
for deb in "$dir"/debs/*.deb; do dpkg-deb -f "$deb" Package Version Architecture | paste -sd ' '; done >"$dir/root/packages.txt"
rm -rf "$dir/apt" "$dir/debs"
echo "$STAMP" >"$dir/stamp"
echo "$dir/root"
