"""An idempotent librdkafka producer (enable.idempotence=true) against Sluice's Kafka port.

Run by broker/tests/kafka_idempotence.rs while it SIGKILLs a partition leader and pauses
another past the client's request timeout. Sends `count`
numbered values round-robin over the partitions at a steady rate, acks=all, up to 5 requests in
flight per connection, and prints `progress N` (N acknowledged) lines as it goes, then one JSON
line: every acknowledged [partition, offset, sequence number] and every delivery error.
Exits non-zero only when the client itself fails; the Rust test judges the outcome.
"""
import argparse
import json
import os
import sys
import time

from confluent_kafka import Producer

FLUSH_DEADLINE_S = 120
PROGRESS_EVERY = 200


def value_of(number):
    return f"idem-{number:08d}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True, help="messages per second")
    args = parser.parse_args()
    acked = []
    errors = []

    def delivered(error, message):
        if error is not None:
            errors.append(str(error))
            return
        number = int(message.value().decode().removeprefix("idem-"))
        # librdkafka reports no offset (None) for a message it knows persisted but not where.
        offset = message.offset()
        acked.append([message.partition(), -1 if offset is None else offset, number])
        if len(acked) % PROGRESS_EVERY == 0:
            print(f"progress {len(acked)}", flush=True)

    config = {
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 90000,
        "retry.backoff.ms": 100,
        # Short, so a paused leader makes requests time out on the client while the broker
        # still holds them: the retries race the originals.
        "request.timeout.ms": 1000,
    }
    if os.environ.get("SLUICE_RDKAFKA_DEBUG"):
        config["debug"] = os.environ["SLUICE_RDKAFKA_DEBUG"]
    producer = Producer(config)
    started = time.monotonic()
    for number in range(args.count):
        producer.produce(args.topic, partition=number % args.partitions,
                         value=value_of(number), on_delivery=delivered)
        producer.poll(0)
        ahead = started + number / args.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    left = producer.flush(FLUSH_DEADLINE_S)
    print(json.dumps({"acked": acked, "errors": errors, "unflushed": left}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
