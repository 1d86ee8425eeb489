"""Drives Sluice's Kafka port with confluent-kafka (librdkafka), the client most users run.

Run by broker/tests/kafka_clients.rs. Creates its topic with the admin client, produces keyed
messages with acks=all and every codec librdkafka offers (murmur2 partitioner, as Java and
Sluice's native client hash keys), reads them back from assigned partitions, looks an offset up
by timestamp, and reads what Sluice's native producer wrote. Prints one JSON line describing
what it produced; exits non-zero on any failure.
"""
import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 25
DEADLINE_S = 60


def fail(message):
    print(f"confluent-kafka: {message}", file=sys.stderr)
    sys.exit(1)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(timeout=DEADLINE_S)
    metadata = admin.list_topics(timeout=DEADLINE_S)
    if len(metadata.topics[topic].partitions) != partitions:
        fail(f"metadata shows {metadata.topics[topic].partitions} partitions")


def produce_all(bootstrap, topic):
    produced = []
    errors = []

    def delivered(error, message):
        if error is not None:
            errors.append(str(error))
        else:
            produced.append([message.partition(), message.offset(),
                             message.key().decode(), message.value().decode()])

    for codec in CODECS:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                             "compression.type": codec, "partitioner": "murmur2_random",
                             "linger.ms": 5})
        for index in range(PER_CODEC):
            producer.produce(topic, key=f"key-{codec}-{index}",
                             value=f"confluent-{codec}-{index}", on_delivery=delivered)
        if producer.flush(DEADLINE_S) != 0:
            fail(f"{codec}: messages left unflushed")
    if errors:
        fail(f"delivery errors: {errors[:3]}")
    return produced


def consume(bootstrap, topic, partitions, expected, start=None):
    """Reads `expected` messages from the assigned partitions; returns them as lists."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-assigned-only",
                         "enable.auto.commit": False, "enable.auto.offset.store": False})
    offsets = start or {}
    consumer.assign([TopicPartition(topic, p, offsets.get(p, -2)) for p in range(partitions)])
    seen = []
    deadline = time.time() + DEADLINE_S
    while len(seen) < expected and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            fail(f"consume error: {message.error()}")
        key = message.key().decode() if message.key() is not None else None
        seen.append([message.partition(), message.offset(), key, message.value().decode()])
    consumer.close()
    if len(seen) != expected:
        fail(f"read {len(seen)} of {expected} messages from {topic}")
    return seen


def offset_by_timestamp(bootstrap, topic):
    """Produces 10 messages one second apart in time and looks the 6th up by its timestamp."""
    base = int(time.time() * 1000) - 100_000
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for index in range(10):
        producer.produce(topic, value=f"t-{index}", partition=0, timestamp=base + index * 1000)
        producer.flush(DEADLINE_S)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-assigned-only"})
    found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 4500)], DEADLINE_S)
    consumer.close()
    if found[0].offset != 5:
        fail(f"offset for timestamp is {found[0].offset}, expected 5")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--native-topic", required=True)
    parser.add_argument("--native-count", type=int, required=True)
    args = parser.parse_args()
    try:
        create_topic(args.bootstrap, args.topic, args.partitions)
        produced = produce_all(args.bootstrap, args.topic)
        consumed = consume(args.bootstrap, args.topic, args.partitions, len(produced))
        if sorted(map(tuple, consumed)) != sorted(map(tuple, produced)):
            fail("messages read back differ from the messages produced")
        create_topic(args.bootstrap, args.topic + "-times", 1)
        offset_by_timestamp(args.bootstrap, args.topic + "-times")
        native = consume(args.bootstrap, args.native_topic, 1, args.native_count)
        values = sorted(value for _, _, _, value in native)
        if values != sorted(f"native-{i}" for i in range(args.native_count)):
            fail("the native producer's messages read back wrong")
    except KafkaException as error:
        fail(f"Kafka error: {error}")
    print(json.dumps({"produced": produced}))


if __name__ == "__main__":
    main()
