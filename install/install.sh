#!/usr/bin/env bash
# Installs pullguard as containerd's image verifier on this node (containerd 2.1 or newer).
#
#   install/install.sh [--binary FILE] [--bin-dir DIR] [--config FILE] [--dropin FILE] [--policy FILE]
#
# 1. copies the executable into bin_dir, which must hold nothing else (containerd runs every file
#    there on every pull);
# 2. installs the containerd drop-in and adds it to `imports` in containerd's config.toml (creating a
#    minimal version 3 config.toml if there is none). The drop-in's version matches the main file's:
#    containerd-config/pullguard.toml for version 3, pullguard-v2.toml for version 2 (a version 3
#    drop-in would make containerd ignore the main file's version 2 CRI settings);
# 3. writes the example policy to /etc/pullguard/policy.yaml, only if no policy is there yet.
# It does not restart containerd; it tells you to.
#
# DESTDIR=/some/root stages everything under that root (packaging, tests). Paths written INTO
# files (the import, bin_dir) are the final ones, without DESTDIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
DESTDIR=${DESTDIR:-}
binary="$repo/dist/pullguard"
bin_dir=/opt/containerd/image-verifier/bin
config=/etc/containerd/config.toml
dropin=/etc/containerd/conf.d/pullguard.toml
policy=/etc/pullguard/policy.yaml

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --dropin) dropin=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for p in "$bin_dir" "$config" "$dropin" "$policy"; do
  [[ "$p" == /* ]] || die "$p: paths must be absolute"
  [[ "$p" != *'"'* && "$p" != *'\'* ]] || die "$p: quotes and backslashes are not supported in paths"
done

# --- 1. the executable, alone in bin_dir -------------------------------------------------------
[[ -f "$binary" && -x "$binary" ]] || die "$binary is missing or not executable (run \`make build\` first, or pass --binary)"
version=$("$binary" --version 2>&1) || die "$binary --version failed: $version"
dest_bin="$DESTDIR$bin_dir"
mkdir -p "$dest_bin"
others=$(find "$dest_bin" -mindepth 1 -maxdepth 1 ! -name pullguard -printf '%f\n' | sort | tr '\n' ' ')
if [[ -n "$others" ]]; then
  die "$dest_bin also holds: $others
containerd executes every file in bin_dir on every pull; a stray file there blocks or bypasses pulls.
Move those files away, or pick another directory with --bin-dir (and set bin_dir to it)."
fi
# Stage next to bin_dir, never inside it (a pull meanwhile would execute the half-copied file),
# then rename over the old one: a running pull keeps the old inode.
stage=$(mktemp "$(dirname "$dest_bin")/.pullguard.XXXXXX")
trap 'rm -f "$stage"' EXIT
cp "$binary" "$stage"
chmod 0755 "$stage"
mv -f "$stage" "$dest_bin/pullguard"
trap - EXIT
say "installed $version as $bin_dir/pullguard"

# --- 2. the containerd drop-in and the import --------------------------------------------------
dest_config="$DESTDIR$config"
# The main file's version (top-level key, before the first [table]); none means a new version 3 file.
main_version=3
if [[ -e "$dest_config" ]]; then
  main_version=$(awk '/^[[:space:]]*\[/ { exit } /^[[:space:]]*version[[:space:]]*=/ { gsub(/[^0-9]/, ""); print; exit }' "$dest_config")
  [[ -n "$main_version" ]] || main_version=1
fi
case "$main_version" in
  3) source_dropin="$repo/containerd-config/pullguard.toml" ;;
  2) source_dropin="$repo/containerd-config/pullguard-v2.toml" ;;
  *) die "$config is config version $main_version; containerd 2.1+ with a version 2 or 3 config is required (\`containerd config migrate\`)" ;;
esac
mkdir -p "$(dirname "$DESTDIR$dropin")"
sed "s|^\(  bin_dir = \)\".*\"|\1\"$bin_dir\"|" "$source_dropin" >"$DESTDIR$dropin.tmp"
mv -f "$DESTDIR$dropin.tmp" "$DESTDIR$dropin"
chmod 0644 "$DESTDIR$dropin"
say "installed the containerd drop-in $dropin (config version $main_version, from containerd-config/$(basename "$source_dropin"))"

mkdir -p "$(dirname "$dest_config")"
if [[ ! -e "$dest_config" ]]; then
  printf 'version = 3\nimports = ["%s"]\n' "$dropin" >"$dest_config"
  say "created $config (version 3) importing $dropin"
elif grep -qF "\"$dropin\"" "$dest_config" || grep -qF "'$dropin'" "$dest_config"; then
  say "$config already imports $dropin"
else
  [[ -e "$dest_config.pullguard-bak" ]] || cp -p "$dest_config" "$dest_config.pullguard-bak"
  # Top-level keys must come before the first [table]; look only there.
  top=$(awk '/^[[:space:]]*\[/ { exit } { print }' "$dest_config")
  if grep -qE '^[[:space:]]*imports[[:space:]]*=' <<<"$top"; then
    grep -qE '^[[:space:]]*imports[[:space:]]*=[[:space:]]*\[.*\][[:space:]]*(#.*)?$' <<<"$top" ||
      die "$config has a multi-line imports = [...]; add \"$dropin\" to it by hand"
    awk -v entry="\"$dropin\"" '
      !done && /^[[:space:]]*\[/ { intable = 1 }
      !done && !intable && /^[[:space:]]*imports[[:space:]]*=/ {
        line = $0; comment = ""
        if (match(line, /\][[:space:]]*#.*$/)) { comment = substr(line, RSTART + 1); line = substr(line, 1, RSTART) }
        if (line ~ /\[[[:space:]]*\][[:space:]]*$/) sub(/\[[[:space:]]*\][[:space:]]*$/, "[" entry "]", line)
        else sub(/\][[:space:]]*$/, ", " entry "]", line)
        print line comment; done = 1; next
      }
      { print }' "$dest_config" >"$dest_config.tmp"
  else
    # No imports yet: add one right after `version = N` (or first, if there is no version line).
    awk -v entry="imports = [\"$dropin\"]" '
      !done && /^[[:space:]]*version[[:space:]]*=/ { print; print entry; done = 1; next }
      { print }
      END { if (!done) exit 3 }' "$dest_config" >"$dest_config.tmp" ||
      { printf 'imports = ["%s"]\n' "$dropin"; cat "$dest_config"; } >"$dest_config.tmp"
  fi
  cat "$dest_config.tmp" >"$dest_config"
  rm -f "$dest_config.tmp"
  say "added $dropin to imports in $config (backup: $config.pullguard-bak)"
fi
if grep -qE '^[[:space:]]*config_path[[:space:]]*=' "$dest_config"; then
  say "note: $config sets a registry config_path; the drop-in replaces it with /etc/containerd/certs.d (one directory: transfer-service pulls ignore path lists). Move your hosts.toml files there."
fi

# --- 3. the policy, only if there is none ------------------------------------------------------
dest_policy="$DESTDIR$policy"
if [[ -e "$dest_policy" ]]; then
  say "kept the existing policy $policy"
else
  mkdir -p "$(dirname "$dest_policy")"
  cp "$repo/install/policy.example.yaml" "$dest_policy"
  chmod 0644 "$dest_policy"
  say "wrote the example policy $policy (allows registry.k8s.io/pause, denies everything else)"
fi
if [[ "$policy" != /etc/pullguard/policy.yaml ]]; then
  say "containerd must pass PULLGUARD_POLICY=$policy to pullguard: add Environment=PULLGUARD_POLICY=$policy to containerd's systemd unit"
fi

cat <<NEXT

Next:
  1. Review the policy:   $bin_dir/pullguard policy check $policy
  2. Restart containerd:  systemctl restart containerd
  3. Check it took:       containerd config dump | grep -A3 'image-verifier.v1.bindir'
                          journalctl -u containerd | grep 'Falling back to local image pull mode'
                          (that line means kubelet pulls bypass every verifier; see containerd-config/README.md)
NEXT
