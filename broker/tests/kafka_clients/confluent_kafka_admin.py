"""confluent-kafka's AdminClient against Sluice's Kafka port: grows a topic with
CreatePartitions, tries to shrink it (which must be refused), sets a topic config with
IncrementalAlterConfigs, and prints what the client then sees as one JSON line.

Usage: confluent_kafka_admin.py BOOTSTRAP TOPIC PARTITIONS
"""
import json
import sys

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
)

TIMEOUT_S = 30


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_partitions(
        [NewPartitions(topic, count)], request_timeout=TIMEOUT_S
    ).values():
        future.result()
    try:
        admin.create_partitions([NewPartitions(topic, 1)])[topic].result()
        shrink = "accepted"
    except Exception as error:  # the refusal is what the test wants to see
        shrink = str(error)
    entry = ConfigEntry(
        "retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    metadata = admin.list_topics(topic, timeout=TIMEOUT_S)
    partitions = len(metadata.topics[topic].partitions)
    print(json.dumps({"partitions": partitions, "shrink": shrink}))


if __name__ == "__main__":
    main()
