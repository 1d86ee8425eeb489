"""confluent-kafka's AdminClient against Sluice's Kafka port: grows a topic with
CreatePartitions, tries to shrink it (which must be refused), sets a topic config with
IncrementalAlterConfigs, asks for a preferred leader election of partition 0 with
ElectLeaders, and prints what the client then sees as one JSON line.

Usage: confluent_kafka_admin.py BOOTSTRAP TOPIC PARTITIONS
"""
import json
import sys

from confluent_kafka import ElectionType, TopicPartition
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
    # No timeout keyword: confluent-kafka 2.16's elect_leaders fails on any keyword argument.
    elected = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(
        timeout=TIMEOUT_S
    )
    election = {
        f"{tp.topic}-{tp.partition}": (error.name() if error else "NONE")
        for tp, error in elected.items()
    }
    print(json.dumps({"partitions": partitions, "shrink": shrink, "election": election}))


if __name__ == "__main__":
    main()
