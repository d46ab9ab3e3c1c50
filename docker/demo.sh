#!/usr/bin/env bash
# Runs the demo on a fresh machine: installs the project, starts the local Kafka broker if
# none answers on $AION_BOOTSTRAP_SERVERS, runs `aion demo` (an engine worker and an activity
# worker through real Kafka), and stops the broker again if this script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
export AION_BOOTSTRAP_SERVERS="${AION_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
started=0
if ! docker/kafka-local/kafka-local status >/dev/null 2>&1; then
  docker/kafka-local/kafka-local start
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then docker/kafka-local/kafka-local stop; fi; }
trap cleanup EXIT
aion demo
