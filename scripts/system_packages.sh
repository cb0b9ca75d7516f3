#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages asl-edge's video input and tests need, when they are missing:
# GStreamer 1.x (tools, base/good/bad/ugly plugins, libav, and -x with a font for the labels of
# the annotated video), its GObject-introspection data (and the RTSP server's, for the tests), the
# headers PyGObject builds against, the build tools, and the mosquitto MQTT broker the streaming
# tests start on loopback.
# Says what it installs first; apt as root, sudo otherwise. Elsewhere it lists what to install.
set -euo pipefail

packages=(
  make cmake g++ pkg-config
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x fonts-dejavu-core
  gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
  libgirepository1.0-dev libcairo2-dev
  mosquitto
)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for name in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$name" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$name")
  done
else
  echo "system_packages.sh: not a Debian/Ubuntu system; install the equivalents of: ${packages[*]}" >&2
  exit 0
fi
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "system_packages.sh: installing the system packages asl-edge needs: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "system_packages.sh: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
