#!/usr/bin/env bash
# Kafka's storage tool (format, info), as /opt/kafka/bin/kafka-storage.sh of the apache/kafka image.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
