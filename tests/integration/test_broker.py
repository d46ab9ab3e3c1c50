"""The session broker is real, answers both Kafka clients the project uses, and is configured
the way the engine relies on (topics never created by accident, log cleaner on)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def test_broker_answers_metadata(kafka_bootstrap: str) -> None:
    md = _admin(kafka_bootstrap).list_topics(timeout=10)
    assert md.brokers, "the cluster lists no brokers"
    assert md.controller_id >= 0


def test_broker_settings_the_engine_relies_on(kafka_bootstrap: str) -> None:
    admin = _admin(kafka_bootstrap)
    broker_id = next(iter(admin.list_topics(timeout=10).brokers))
    resource = ConfigResource(ConfigResource.Type.BROKER, str(broker_id))
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["auto.create.topics.enable"].value == "false"
    assert configs["log.cleaner.enable"].value == "true"


def test_producing_to_a_missing_topic_does_not_create_it(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.never-created"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 1000})
    errors: list[object] = []
    producer.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert topic not in _admin(kafka_bootstrap).list_topics(timeout=10).topics


async def test_aiokafka_and_confluent_kafka_read_each_others_records(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.roundtrip"
    admin = _admin(kafka_bootstrap)  # keep a reference until the futures resolve
    for fut in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        fut.result(timeout=10)

    # aiokafka admin speaks to Kafka 4.1 too (Faust uses it to declare its topics).
    aadmin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await aadmin.start()
    try:
        # A broker learns of a new topic from the controller a moment after the create returns.
        for _ in range(50):
            if topic in await aadmin.list_topics():
                break
            await asyncio.sleep(0.2)
        assert topic in await aadmin.list_topics()
    finally:
        await aadmin.close()

    # confluent-kafka (murmur2_random) and aiokafka (default) put the same key on the same partition.
    cproducer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    delivered: dict[bytes, int] = {}
    for i in range(10):
        key = f"wf-{i}".encode()
        cproducer.produce(topic, b"from-confluent", key=key,
                          on_delivery=lambda err, msg: delivered.__setitem__(msg.key(), msg.partition()))
    assert cproducer.flush(10) == 0

    aproducer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await aproducer.start()
    try:
        for i in range(10):
            key = f"wf-{i}".encode()
            md = await aproducer.send_and_wait(topic, b"from-aiokafka", key=key)
            assert md.partition == delivered[key], f"key {key!r}: aiokafka and librdkafka disagree"
    finally:
        await aproducer.stop()

    aconsumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"{topic_prefix}-a",
                                 auto_offset_reset="earliest")
    await aconsumer.start()
    seen_by_aiokafka: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(seen_by_aiokafka) < 20:
                for records in (await aconsumer.getmany(timeout_ms=500)).values():
                    seen_by_aiokafka += [r.value for r in records]
    finally:
        await aconsumer.stop()
    assert sorted(set(seen_by_aiokafka)) == [b"from-aiokafka", b"from-confluent"]
    assert len(seen_by_aiokafka) == 20

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}-c",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    seen_by_confluent = []
    try:
        for _ in range(200):
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                seen_by_confluent.append(msg.value())
            if len(seen_by_confluent) == 20:
                break
    finally:
        consumer.close()
    assert len(seen_by_confluent) == 20

