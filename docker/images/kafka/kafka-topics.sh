#!/usr/bin/env bash
# Kafka's topic tool, as /opt/kafka/bin/kafka-topics.sh of the apache/kafka image.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
