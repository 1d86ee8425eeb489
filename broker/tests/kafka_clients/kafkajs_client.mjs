// Drives Sluice's Kafka port with kafkajs 2.2 (pure JavaScript, its own protocol code).
//
// Run by broker/tests/kafka_clients.rs with NODE_PATH pointing at the installed client.
// Creates its topic with the admin client, produces keyed messages with acks=all and each codec
// kafkajs offers here (none, gzip built in, snappy through kafkajs-snappy; its lz4 and zstd
// codecs are native add-ons not installed), checks the offsets the admin client reads, and
// looks an offset up by timestamp; then reads every message back as a consumer-group member
// (kafkajs reads only inside groups) and checks the offsets the group committed, and that a new
// member of a group resumes after the previous member's commit. The Rust side
// also reads these messages with Sluice's native consumer. Prints one JSON line describing what
// it produced; exits non-zero on any failure.
import { createRequire } from 'node:module';
import { argument, fail } from './kafkajs_args.mjs';

const require = createRequire(import.meta.url);
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
const SnappyCodec = require('kafkajs-snappy');

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;

const PER_CODEC = 25;

async function main() {
  const bootstrap = argument('bootstrap');
  const topic = argument('topic');
  const partitions = Number(argument('partitions'));
  const kafka = new Kafka({ clientId: 'sluice-test', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions }, { topic: `${topic}-times`, numPartitions: 1 },
      { topic: `${topic}-resume`, numPartitions: 2 }],
    waitForLeaders: true,
  });
  if (!created) fail('createTopics answered false');

  // Idempotent (InitProducerId, then sequence numbers); kafkajs allows one request in flight.
  const producer = kafka.producer({
    allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1,
  });
  await producer.connect();
  const produced = [];
  const codecs = [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP],
    ['snappy', CompressionTypes.Snappy]];
  for (const [name, compression] of codecs) {
    const messages = [];
    for (let index = 0; index < PER_CODEC; index += 1) {
      messages.push({ key: `key-${name}-${index}`, value: `kafkajs-${name}-${index}` });
    }
    // One request per message, so every record's offset is known from its answer.
    for (const message of messages) {
      const [answer] = await producer.send({ topic, acks: -1, compression, messages: [message] });
      if (answer.errorCode !== 0) fail(`produce error ${answer.errorCode}`);
      produced.push([answer.partition, Number(answer.baseOffset), message.key, message.value]);
    }
  }

  const offsets = await admin.fetchTopicOffsets(topic);
  const total = offsets.reduce((sum, partition) => sum + Number(partition.high), 0);
  if (total !== produced.length) fail(`latest offsets add up to ${total}, produced ${produced.length}`);

  const base = Date.now() - 100000;
  for (let index = 0; index < 10; index += 1) {
    await producer.send({
      topic: `${topic}-times`, acks: -1,
      messages: [{ value: `t-${index}`, partition: 0, timestamp: String(base + index * 1000) }],
    });
  }
  const [byTime] = await admin.fetchTopicOffsetsByTimestamp(`${topic}-times`, base + 4500);
  if (Number(byTime.offset) !== 5) fail(`offset for timestamp is ${byTime.offset}, expected 5`);

  await readInGroup(kafka, topic, produced);
  const groupId = `${topic}-group`;
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const committedTotal = committed.partitions.reduce((sum, p) => sum + Number(p.offset), 0);
  if (committedTotal !== produced.length) {
    fail(`the group committed offsets adding up to ${committedTotal}, read ${produced.length}`);
  }

  await groupResumes(kafka, producer, `${topic}-resume`);
  await producer.disconnect();
  await admin.disconnect();
  console.log(JSON.stringify({ produced }));
}

// A group member reads every message of `topic` and commits; after more messages, a new member
// of the same group reads exactly the new ones (it resumes after the commit).
async function groupResumes(kafka, producer, topic) {
  const send = async (values) => {
    for (const value of values) {
      await producer.send({ topic, acks: -1, messages: [{ key: value, value }] });
    }
  };
  const before = Array.from({ length: 20 }, (_, index) => `before-${index}`);
  await send(before);
  const first = await readValues(kafka, topic, `${topic}-group`, before.length);
  if (JSON.stringify(first.sort()) !== JSON.stringify(before.sort())) {
    fail('the first group member read other messages than were produced');
  }
  const after = Array.from({ length: 10 }, (_, index) => `after-${index}`);
  await send(after);
  const resumed = await readValues(kafka, topic, `${topic}-group`, after.length);
  if (JSON.stringify(resumed.sort()) !== JSON.stringify(after.sort())) {
    fail(`the resumed member read ${resumed.slice(0, 3)}...: not exactly the new messages`);
  }
}

// Reads the topic from the beginning as the one member of a consumer group (consumer.run with
// eachMessage, auto commit) until as many messages arrived as were produced, and checks they
// are exactly the produced ones.
async function readInGroup(kafka, topic, produced) {
  const read = await readValues(kafka, topic, `${topic}-group`, produced.length);
  const expected = produced.map((entry) => entry[3]).sort();
  if (JSON.stringify(read.sort()) !== JSON.stringify(expected)) {
    fail('the group consumer read other messages than were produced');
  }
}

// One member of `groupId` reads `count` message values of `topic` (from the beginning where the
// group has no commit, else from its commit), commits them on leaving, and returns them.
async function readValues(kafka, topic, groupId, count) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const read = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`group ${groupId} read ${read.length} of ${count} messages`)), 90000);
    consumer.run({
      eachMessage: async ({ message }) => {
        read.push(message.value.toString());
        if (read.length >= count) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch(reject);
  }).catch((error) => fail(error.message));
  await consumer.disconnect();
  return read;
}

main().catch((error) => fail(error.stack || String(error)));
