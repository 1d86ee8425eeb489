"""Consumer groups on Sluice's Kafka port with confluent-kafka (librdkafka).

Run by broker/tests/kafka_clients.rs. Three consumers join one group on a 6-partition topic and
wait until the group has given all partitions out between them; then messages are produced with
acks=all and the three read them, committing synchronously after each message. Every message must
be read exactly once across the three, and each must have read some. Then all close, more
messages are produced, and a new member of the same group must read exactly the new ones: it
resumes from the committed offsets. Prints one JSON line with the counts; exits non-zero on any
failure.
"""
import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

DEADLINE_S = 90
PARTITIONS = 6
MEMBERS = 3


def fail(message):
    print(f"confluent-kafka group: {message}", file=sys.stderr)
    sys.exit(1)


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(timeout=DEADLINE_S)


def produce(bootstrap, topic, first, count):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors = []
    for index in range(first, first + count):
        producer.produce(topic, key=f"k-{index}", value=f"v-{index}",
                         on_delivery=lambda error, _: error and errors.append(str(error)))
    if producer.flush(DEADLINE_S) != 0 or errors:
        fail(f"produce failed: {errors[:3]}")


def member(bootstrap, group, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    consumer.subscribe([topic])
    return consumer


def wait_for_assignment(consumers):
    """Polls every member until the group gave out all partitions, each member some."""
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline:
        for consumer in consumers:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                fail("a message arrived before any was produced")
        sizes = [len(consumer.assignment()) for consumer in consumers]
        if sum(sizes) == PARTITIONS and all(sizes):
            return sizes
    fail(f"the group never settled: assignments {[c.assignment() for c in consumers]}")


def read(consumer, seen, lock, total, done):
    deadline = time.time() + DEADLINE_S
    while not done.is_set() and time.time() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            fail(f"consume error: {message.error()}")
        consumer.commit(message=message, asynchronous=False)
        with lock:
            seen.append((message.partition(), message.offset(), message.value().decode()))
            if len(seen) >= total:
                done.set()


def shared_read(consumers, total):
    """Each member reads in its own thread; returns what each read."""
    lock = threading.Lock()
    done = threading.Event()
    seen = [[] for _ in consumers]
    threads = [threading.Thread(target=read, args=(c, s, lock, total, done))
               for c, s in zip(consumers, seen)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=600)
    args = parser.parse_args()
    group = args.topic + "-group"
    try:
        create_topic(args.bootstrap, args.topic)
        consumers = [member(args.bootstrap, group, args.topic) for _ in range(MEMBERS)]
        sizes = wait_for_assignment(consumers)
        produce(args.bootstrap, args.topic, 0, args.count)
        seen = shared_read(consumers, args.count)
        for consumer in consumers:
            consumer.close()
        values = sorted(value for part in seen for _, _, value in part)
        if values != sorted(f"v-{i}" for i in range(args.count)):
            fail(f"read {len(values)} messages, {len(set(values))} distinct, of {args.count}")
        if not all(seen):
            fail(f"one member read nothing: {[len(part) for part in seen]}")
        produce(args.bootstrap, args.topic, args.count, 60)
        resumed = member(args.bootstrap, group, args.topic)
        again = shared_read([resumed], 60)[0]
        resumed.close()
        new_values = sorted(value for _, _, value in again)
        if new_values != sorted(f"v-{i}" for i in range(args.count, args.count + 60)):
            fail(f"the resumed member read {new_values[:5]}...: not exactly the 60 new messages")
    except KafkaException as error:
        fail(f"Kafka error: {error}")
    print(json.dumps({"assignment": sizes, "per_member": [len(part) for part in seen],
                      "resumed": len(again)}))


if __name__ == "__main__":
    main()
