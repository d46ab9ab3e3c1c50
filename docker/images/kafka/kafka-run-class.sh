#!/usr/bin/env bash
# kafka-run-class.sh CLASS [ARGS...]: runs a class of Kafka's jars as a short-lived tool
# (errors only on the console). KAFKA_OPTS adds JVM flags.
set -euo pipefail
# shellcheck disable=SC2086
exec java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC ${KAFKA_OPTS:-} \
    -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.xml -cp "/opt/kafka/libs/*" "$@"
