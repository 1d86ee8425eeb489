// Moves a partition with kafkajs's admin client (KIP-455 AlterPartitionReassignments and
// ListPartitionReassignments on Sluice's Kafka port), as kafka-reassign-partitions.sh does.
//
// Run by broker/tests/cluster_reassign.rs with NODE_PATH pointing at the installed client.
// First asks for a move onto a broker that does not exist (which must be refused), then for the
// real move, then lists the partition's reassignment until it is gone (the move ended) and reads
// the partition's replicas from the metadata. Prints `moving` when it first lists the move in
// progress, and at the end one JSON line: the refusal, whether the move
// was ever listed in progress (and how), and the replicas at the end. Exits non-zero on failure.
import { createRequire } from 'node:module';
import { argument, fail } from './kafkajs_args.mjs';

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require('kafkajs');

const MOVE_WAIT_MS = 120000;
const POLL_MS = 200;

function assignment(topic, partition, replicas) {
  return { topics: [{ topic, partitionAssignment: [{ partition, replicas }] }], timeout: 30000 };
}

async function refusal(admin, topic, partition, replicas) {
  try {
    await admin.alterPartitionReassignments(assignment(topic, partition, replicas));
    return 'accepted';
  } catch (error) {
    const inner = (error.errors || []).map((each) => each.type || each.message);
    return inner.length > 0 ? inner.join(',') : error.type || error.message;
  }
}

async function waitForTheMove(admin, topic, partition) {
  const deadline = Date.now() + MOVE_WAIT_MS;
  let seen = null;
  while (Date.now() < deadline) {
    const listed = await admin.listPartitionReassignments({
      topics: [{ topic, partitions: [partition] }],
      timeout: 30000,
    });
    const moving = listed.topics
      .filter((each) => each.name === topic)
      .flatMap((each) => each.partitions)
      .find((each) => each.partition === partition);
    if (!moving) return seen;
    // The test resumes the added broker once it has read this line.
    if (!seen) console.log('moving');
    seen = moving;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  fail(`the move of ${topic}-${partition} did not end within ${MOVE_WAIT_MS} ms`);
}

async function main() {
  const brokers = argument('bootstrap').split(',');
  const topic = argument('topic');
  const partition = Number(argument('partition'));
  const replicas = argument('replicas').split(',').map(Number);
  const kafka = new Kafka({ clientId: 'sluice-reassign-test', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const refused = await refusal(admin, topic, partition, [replicas[0], 99]);
  await admin.alterPartitionReassignments(assignment(topic, partition, replicas));
  const seen = await waitForTheMove(admin, topic, partition);
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  const after = metadata.topics[0].partitions.find((each) => each.partitionId === partition);
  await admin.disconnect();
  console.log(JSON.stringify({ refused, seen, replicas: after.replicas }));
}

main().catch((error) => fail(error.stack || String(error)));
