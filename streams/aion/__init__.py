"""Aion Streams: a durable workflow engine on Kafka."""
