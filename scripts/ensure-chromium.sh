#!/usr/bin/env bash
# Makes sure Debian's headless-capable Chromium is installed (the browser test drives it):
# uses an installed one, else installs the `chromium` package with apt. Prints its path.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

find_chromium() { command -v chromium || command -v chromium-browser || true; }

path=$(find_chromium)
if [ -z "$path" ]; then
  echo "installing chromium with apt-get" >&2
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  path=$(find_chromium)
fi
if [ -z "$path" ]; then
  echo "error: chromium could not be installed" >&2
  exit 1
fi
echo "$path"
