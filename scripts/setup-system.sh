#!/usr/bin/env bash
# Debian packages the real-component tests use: nginx (interop tests serve the published tree with it),
# chromium (site tests), softhsm2 + opensc (a real PKCS#11 token for HSM signing), and Node.js/npm
# (the tuf-js interop client) only when no `node` is on PATH; strace (the crash tests inject kill -9
# at every rename a command makes); systemd (`systemd-analyze verify` judges deploy/'s units),
# prometheus-node-exporter (reads the metrics textfile as Prometheus would) and prometheus (its
# `promtool` tests deploy/cfl-alerts.yml), and faketime (bench/bench_auto_bins.py runs its process
# publishes on a clock that runs ahead, so superseded metadata expires as it would over months).
#
# Idempotent and quick when everything is present (one `command -v` per component, no apt call).
# As root with apt-get: installs what is missing. Otherwise: says what to install and exits 0; the
# tests that need a missing component then skip locally and fail under CI=true (tests/conftest.py).
set -euo pipefail

# command that proves the component is there -> Debian package that provides it
declare -A PACKAGE_FOR=(
  [nginx]=nginx
  [chromium]=chromium
  [softhsm2-util]=softhsm2
  [pkcs11-tool]=opensc
  [strace]=strace
  [systemd-analyze]=systemd
  [prometheus-node-exporter]=prometheus-node-exporter
  [promtool]=prometheus
  [faketime]=faketime
)
# Node.js: any `node` will do (a nodesource or nvm one included); only fall back to Debian's.
NODE_PACKAGES=(nodejs npm)

# root's PATH has the sbin directories; a user's may not, and nginx lives in /usr/sbin.
has() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

missing=()
for command in "${!PACKAGE_FOR[@]}"; do
  has "$command" || missing+=("${PACKAGE_FOR[$command]}")
done
if ! has node; then
  missing+=("${NODE_PACKAGES[@]}")
elif ! has npm; then
  missing+=(npm)
fi
# libsofthsm2 is what the HSM test loads; softhsm2-util alone does not prove the module is there.
if has softhsm2-util && [[ ! -e /usr/lib/softhsm/libsofthsm2.so ]] &&
  ! compgen -G '/usr/lib/*/softhsm/libsofthsm2.so' >/dev/null; then
  missing+=(libsofthsm2)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup-system: nginx, chromium, softhsm2, opensc, strace, systemd, node exporter, promtool, faketime and node are installed"
  exit 0
fi

# sort -u: stable output, no duplicates
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<EOF
setup-system: missing Debian package(s): ${missing[*]}
  install them with:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}
  (not root, or no apt-get here). Until then the tests that need them skip locally and FAIL under CI=true.
EOF
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup-system: installing ${missing[*]}"

# Installing nginx must not start a system nginx on port 80: deny service starts for this install
# through Debian's policy-rc.d hook (only when no policy is in place already, and only for this run).
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

# Wait (bounded) rather than fail if another apt/dpkg holds the lock.
apt_options=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
apt-get "${apt_options[@]}" update -q
apt-get "${apt_options[@]}" install -y -q --no-install-recommends "${missing[@]}"

still=()
for command in "${!PACKAGE_FOR[@]}" node npm; do
  has "$command" || still+=("$command")
done
if [[ ${#still[@]} -ne 0 ]]; then
  echo "setup-system: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "setup-system: done"
