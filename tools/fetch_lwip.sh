#!/usr/bin/env bash
# Fetches lwIP's source from Debian's `lwip` source package into
# third_party/lwip/src (ignored by git; never committed).
#
# `apt-get source` needs deb-src entries that the machine may not have, and we
# must not disturb the machine's own apt state. So we run apt with a private
# sources list (the machine's own archives, turned into deb-src entries), a
# private state directory and a private cache directory, all under
# third_party/lwip/apt/. The machine's /var/lib/apt is never written.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest="$here/../third_party/lwip"
dest=$(cd "$dest" && pwd)
want_version="2.1.3"
stamp="$dest/src/.netcore-fetched"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_version" ]; then
  exit 0
fi

log() { printf 'fetch_lwip: %s\n' "$*" >&2; }

apt_dir="$dest/apt"
rm -rf "$apt_dir" "$dest/download" "$dest/src"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/state/lists/partial" \
  "$apt_dir/cache/archives/partial" "$dest/download"

# Mirror the machine's configured Debian archives as deb-src entries.
shopt -s nullglob
n=0
for f in /etc/apt/sources.list.d/*.sources; do
  sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$apt_dir/sources.list.d/$n.sources"
  n=$((n + 1))
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  sed -nE 's/^[[:space:]]*deb[[:space:]]+/deb-src /p' "$f" \
    >"$apt_dir/sources.list.d/$n.list"
  n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
  log "no apt sources configured on this machine"
  exit 1
fi

apt_private=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State=$apt_dir/state"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)

log "refreshing private source lists"
apt-get "${apt_private[@]}" -qq update
log "downloading the lwip source package"
(cd "$dest/download" && apt-get "${apt_private[@]}" -qq source --download-only lwip >/dev/null)

dsc=$(ls "$dest"/download/lwip_*.dsc)
case "$dsc" in
  *"lwip_${want_version}"*) ;;
  *) log "expected lwIP $want_version, Debian offers $(basename "$dsc")"; exit 1 ;;
esac
# apt has already checked the files against the signed archive index; the
# .dsc's own signature needs debian-keyring, which we do not install.
if ! (cd "$dest/download" && dpkg-source -x "$dsc" unpacked >extract.log 2>&1); then
  cat "$dest/download/extract.log" >&2
  exit 1
fi
rm -rf "$dest/download/unpacked/debian"
mv "$dest/download/unpacked" "$dest/src"
echo "$want_version" >"$stamp"
rm -rf "$dest/download"
log "lwIP $want_version unpacked in third_party/lwip/src"
