#!/usr/bin/env bash
# Starts the development mail sink (scripts/mail-sink.py: SMTP on 127.0.0.1:1025, web inbox on
# http://127.0.0.1:1080) in the background unless something already listens on 1025, and says
# where to read the mail. config/default.toml points SMTP_URL at it. Its log: .dev/mail-sink.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if (exec 3<>/dev/tcp/127.0.0.1/1025) 2>/dev/null; then
  echo "mail: something already listens on 127.0.0.1:1025; using it (inbox of the bundled sink: http://127.0.0.1:1080)"
  exit 0
fi
python=$(scripts/ensure-mail-sink.sh)
mkdir -p .dev
nohup "$python" scripts/mail-sink.py --smtp 127.0.0.1:1025 --http 127.0.0.1:1080 >.dev/mail-sink.log 2>&1 &
echo $! >.dev/mail-sink.pid
for _ in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/1025) 2>/dev/null; then
    echo "mail: development SMTP sink on 127.0.0.1:1025 (pid $(cat .dev/mail-sink.pid)); read mail at http://127.0.0.1:1080/ (JSON: /messages)"
    exit 0
  fi
  sleep 0.2
done
echo "mail: the sink did not start; see .dev/mail-sink.log (mail waits in the outbox meanwhile)" >&2
