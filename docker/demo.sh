#!/usr/bin/env bash
# The demo: installs the project, makes sure a Kafka broker answers (starting the local one,
# docker/kafka-local/kafka-local, when nothing listens on 127.0.0.1:9092), then runs `aion demo`:
# an order saga through Kafka with a fresh engine worker and activity worker, printing results
# and histories. Stops what it started, also on failure or Ctrl-C.
#
# AION_BOOTSTRAP_SERVERS=host:port uses another cluster: nothing is started then, and the demo
# stops with one line when that cluster does not answer. KAFKA_LOCAL_PORT moves the local broker.
# Arguments go to `aion demo` (--keep keeps the demo's topics and temporary folder).
# With Docker instead: docker compose -f docker/compose.yml up --build
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

python -m pip install -q -e .

KAFKA_LOCAL=docker/kafka-local/kafka-local
port="${KAFKA_LOCAL_PORT:-9092}"

started_here=0
cleanup() {
    if [[ $started_here == 1 ]]; then
        "$KAFKA_LOCAL" stop || true
    fi
}
trap cleanup EXIT

if [[ -z "${AION_BOOTSTRAP_SERVERS:-}" ]]; then
    export AION_BOOTSTRAP_SERVERS="127.0.0.1:$port"
    if "$KAFKA_LOCAL" status >/dev/null 2>&1; then
        echo "demo: using the kafka-local broker already running on $AION_BOOTSTRAP_SERVERS"
    elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "demo: something already listens on $AION_BOOTSTRAP_SERVERS; using it as the Kafka broker"
    else
        started_here=1
        "$KAFKA_LOCAL" start
    fi
fi

aion demo "$@"
