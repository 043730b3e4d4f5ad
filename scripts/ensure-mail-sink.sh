#!/usr/bin/env bash
# Makes sure the development/test mail sink (scripts/mail-sink.py, on aiosmtpd) can run: a
# virtualenv under .dev/ with aiosmtpd. Prints the virtualenv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.dev/mail-sink-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==1.4.6" >&2
fi
echo "$PWD/$venv/bin/python"
