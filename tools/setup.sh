#!/usr/bin/env bash
# Sets up everything netcore needs on a Debian 12 machine, and nothing else.
#
# Idempotent: a second run checks, finds nothing missing and returns in well
# under a second. It installs Debian packages only when one is missing (so the
# machine's apt lists are refreshed only then) and fetches lwIP's source only
# when the unpacked tree is absent or incomplete.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")

# Packages the build and the tests need. Keep this the single list.
packages=(
  bazel-bootstrap bazel-rules-java bazel-platforms
  gcc libc6-dev dpkg-dev
  libnng-dev libck-dev libcmocka-dev
  iproute2 procps iputils-ping
  passt slirp4netns
  curl python3 socat iperf3   # programs the shim tests run unmodified
)

log() { printf 'setup: %s\n' "$*" >&2; }

missing_packages() {
  local p status
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || printf '%s\n' "$p"
  done
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages (${missing[*]}); run this as root"
    exit 1
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_packages
"$here/fetch_lwip.sh"
