"""Drives Sluice's Kafka port with kafka-python (pure Python, its own protocol code).

Run by broker/tests/kafka_clients.rs. Administers topics (create with a config, describe the
config, create and delete another), produces keyed messages with acks=all and every codec
kafka-python offers (its default partitioner is Java's murmur2), reads them back from assigned
partitions, reads in a consumer group that commits and resumes after the commit, looks an
offset up by timestamp, and reads what Sluice's native producer wrote.
Prints one JSON line describing what it produced; exits non-zero on any failure.
"""
import argparse
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 25
DEADLINE_S = 60
RETENTION_MS = "3600000"

# Messages a group member reads and commits, then messages produced after the commit, which a
# new member of the group must read exactly.
GROUP_FIRST = 40
RESUMED = 20


def fail(message):
    print(f"kafka-python: {message}", file=sys.stderr)
    sys.exit(1)


def administer(bootstrap, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=DEADLINE_S * 1000)
    admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"retention.ms": RETENTION_MS}),
                         NewTopic(topic + "-doomed", 2, 1),
                         NewTopic(topic + "-times", 1, 1)])
    resources = [ConfigResource(ConfigResourceType.TOPIC, topic)]
    try:
        # kafka-python 3 shows only overridden settings unless asked for all of them.
        described = admin.describe_configs(resources, config_filter="all")
    except TypeError:
        described = admin.describe_configs(resources)
    entries = described_entries(described, topic)
    if entries.get("retention.ms") != RETENTION_MS:
        fail(f"describe_configs shows retention.ms {entries.get('retention.ms')}")
    if "segment.bytes" not in entries:
        fail("describe_configs omits the defaults")
    admin.delete_topics([topic + "-doomed"])
    listed = admin.list_topics()
    if topic + "-doomed" in listed or topic not in listed:
        fail(f"list_topics after delete: {listed}")
    admin.close()


def described_entries(described, topic):
    """Config name -> value from describe_configs' answer: kafka-python 3's
    {type: {name: {key: {value...}}}}, or 2's list of raw responses."""
    if isinstance(described, dict):
        return {key: data["value"] for key, data in described["topic"][topic].items()}
    responses = described if isinstance(described, list) else [described]
    entries = {}
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                entries[entry[0]] = entry[1]
    return entries


def producer_options():
    """Idempotent producers (InitProducerId, then producer id and sequence numbers in every
    batch), as kafka-python 3 does by default; kafka-python 2 has no such option."""
    if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
        return {"enable_idempotence": True}
    return {}


def produce_all(bootstrap, topic):
    produced = []
    for codec in CODECS:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec,
                                 linger_ms=5, request_timeout_ms=DEADLINE_S * 1000,
                                 **producer_options())
        name = codec or "none"
        futures = [(f"key-{name}-{i}", f"kafka-python-{name}-{i}",
                    producer.send(topic, key=f"key-{name}-{i}".encode(),
                                  value=f"kafka-python-{name}-{i}".encode()))
                   for i in range(PER_CODEC)]
        for key, value, future in futures:
            metadata = future.get(timeout=DEADLINE_S)
            produced.append([metadata.partition, metadata.offset, key, value])
        producer.close()
    return produced


def consume(bootstrap, topic, partitions, expected):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    seen = []
    deadline = time.time() + DEADLINE_S
    while len(seen) < expected and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                key = record.key.decode() if record.key is not None else None
                seen.append([record.partition, record.offset, key, record.value.decode()])
    consumer.close()
    if len(seen) != expected:
        fail(f"read {len(seen)} of {expected} messages from {topic}")
    return seen


def offset_by_timestamp(bootstrap, topic):
    base = int(time.time() * 1000) - 100_000
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_options())
    for index in range(10):
        producer.send(topic, value=f"t-{index}".encode(), partition=0,
                      timestamp_ms=base + index * 1000).get(timeout=DEADLINE_S)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    found = consumer.offsets_for_times({TopicPartition(topic, 0): base + 4500})
    consumer.close()
    answer = found[TopicPartition(topic, 0)]
    if answer is None or answer.offset != 5 or answer.timestamp != base + 5000:
        fail(f"offset for timestamp is {answer}, expected offset 5 at {base + 5000}")


def group_read(bootstrap, topic, group, expected):
    """One group member reads until it has `expected` messages, commits them and closes."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    seen = []
    deadline = time.time() + DEADLINE_S
    while len(seen) < expected and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(record.value.decode() for record in records)
    consumer.commit()
    consumer.close()
    if len(seen) != expected:
        fail(f"group {group} read {len(seen)} of {expected} messages from {topic}")
    return seen


def send_values(bootstrap, topic, values):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_options())
    for value in values:
        producer.send(topic, key=value.encode(), value=value.encode()).get(timeout=DEADLINE_S)
    producer.close()


def group_resumes(bootstrap, topic):
    """In a topic of its own: a group member reads every message and commits; after more
    messages, a new member of the same group reads exactly the new ones."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()
    group = topic + "-group"
    before = [f"before-commit-{i}" for i in range(GROUP_FIRST)]
    send_values(bootstrap, topic, before)
    if sorted(group_read(bootstrap, topic, group, len(before))) != sorted(before):
        fail("the group member read other messages than were produced")
    later = [f"after-commit-{i}" for i in range(RESUMED)]
    send_values(bootstrap, topic, later)
    resumed = group_read(bootstrap, topic, group, RESUMED)
    if sorted(resumed) != sorted(later):
        fail(f"the resumed member read {resumed[:3]}...: not exactly the new messages")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--native-topic", required=True)
    parser.add_argument("--native-count", type=int, required=True)
    args = parser.parse_args()
    administer(args.bootstrap, args.topic, args.partitions)
    produced = produce_all(args.bootstrap, args.topic)
    consumed = consume(args.bootstrap, args.topic, args.partitions, len(produced))
    if sorted(map(tuple, consumed)) != sorted(map(tuple, produced)):
        fail("messages read back differ from the messages produced")
    group_resumes(args.bootstrap, args.topic + "-group")
    offset_by_timestamp(args.bootstrap, args.topic + "-times")
    native = consume(args.bootstrap, args.native_topic, 1, args.native_count)
    if sorted(value for _, _, _, value in native) != sorted(f"native-{i}" for i in range(args.native_count)):
        fail("the native producer's messages read back wrong")
    print(json.dumps({"produced": produced}))


if __name__ == "__main__":
    main()
