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

# Python peers for iothub-emulator's interop tests: a virtualenv at .venv in
# the repository root (gitignored) with paho-mqtt and Microsoft's
# azure-iot-device (which pins paho-mqtt < 2). pip uses its configured index.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q python3 python3-venv >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q python3 python3-venv >/dev/null
  }
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PYTHON" -m venv "$ROOT/.venv" || {
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q python3-venv >/dev/null
    rm -rf "$ROOT/.venv"
    "$PYTHON" -m venv "$ROOT/.venv"
  }
fi
if ! "$ROOT/.venv/bin/python" -c 'import paho.mqtt.client, azure.iot.device' >/dev/null 2>&1; then
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check paho-mqtt azure-iot-device
fi
echo "python peers: $("$ROOT/.venv/bin/python" -c 'from importlib.metadata import version as v; print("paho-mqtt", v("paho-mqtt"), "azure-iot-device", v("azure-iot-device"))')"
