#!/usr/bin/env bash
# Installs the Debian packages the tests (or, with `bench`, the benchmarks) need. Idempotent and quiet
# when everything is already there. Runs as root in CI; uses sudo otherwise when available.
set -euo pipefail

packages=()
case "${1:-test}" in
  # iproute2: `ip netns` for the cross-host mDNS test; chromium + fonts: the dashboard's browser tests
  test) packages=(docker.io iproute2 chromium fonts-dejavu-core) ;;
  bench) packages=(nginx caddy wrk chromium fonts-dejavu-core) ;;
  *) echo "usage: $0 [test|bench]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
