#!/usr/bin/env bash
# Installs the real protocol peers the interop tests talk to.
# Today: the mosquitto broker (Debian package). Idempotent; needs root or sudo
# for apt. Tests start their own broker on a free loopback port, so the
# system service is never used.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q mosquitto >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q mosquitto >/dev/null
  }
fi
# The package may start a system broker on 1883; our tests never use it.
echo "mosquitto: $( (command -v mosquitto || echo /usr/sbin/mosquitto) )"
