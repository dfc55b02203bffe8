#!/usr/bin/env node
// kafkajs 2.2.4 round trip against a Runnel broker.
//
// Usage: node roundtrip.js BOOTSTRAP TOPIC   (kafkajs is installed into ./node_modules by
// scripts/install-test-deps.sh from ../shared/clients/kafkajs-2.2.4.tgz)
//
// Codecs: none and gzip only. kafkajs ships gzip; snappy, lz4 and zstd need codec plugins
// (kafkajs-snappy, kafkajs-lz4, @kafkajs/zstd) registered in CompressionCodecs, which kafkajs
// does not ship and which we cannot install here (no npm registry), so they are skipped.
//
// Checks:
// - admin.createTopics creates TOPIC with 3 partitions; fetchTopicMetadata shows 3.
// - per codec one producer.send of 50 keyed records (5 keys) with three headers and an explicit
//   timestamp, acks=-1; every partition in the reply has errorCode 0; a record's acknowledged
//   offset is the partition's baseOffset plus its index among that send's records for the
//   partition.
// - a consumer group reading from the beginning gets exactly those records, each at its
//   acknowledged (partition, offset), with equal key, value, headers and timestamp; offsets
//   strictly increase per partition; each key's records in send order; no duplicates, nothing
//   extra. (This also exercises the group protocol: FindCoordinator, JoinGroup, SyncGroup,
//   OffsetFetch, Heartbeat.)
// Prints one summary line per codec; exits non-zero on any mismatch.
'use strict';
const path = require('path');
const { Kafka, CompressionTypes, Partitioners, logLevel } = require(path.join(__dirname, 'node_modules', 'kafkajs'));

const [bootstrap, topic] = process.argv.slice(2);
const CODECS = [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]];
const PER_CODEC = 50;
const PARTITIONS = 3;

function fail(msg) {
  console.error(`kafkajs: FAIL: ${msg}`);
  process.exit(1);
}

async function main() {
  const kafka = new Kafka({
    clientId: 'runnel-compat-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 5 },
    requestTimeout: 30000,
  });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  if (!created) fail('createTopics returned false (topic already existed)');
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  if (md.topics[0].partitions.length !== PARTITIONS) fail(`metadata: ${JSON.stringify(md)}`);
  await admin.disconnect();

  const sent = new Map(); // "p:offset" -> {codec, seq, key, value, headers, ts}
  const tStart = Date.now();
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  for (const [codec, type] of CODECS) {
    const messages = [];
    for (let i = 0; i < PER_CODEC; i++) {
      messages.push({
        key: `key-${i % 5}`,
        value: `${codec}-${i}-kafkajs`,
        headers: { codec, seq: String(i), bin: Buffer.from([0, 255, i]) },
        timestamp: String(Date.now()),
      });
    }
    const reply = await producer.send({ topic, acks: -1, compression: type, messages });
    const base = new Map();
    for (const r of reply) {
      if (r.errorCode !== 0) fail(`${codec}: produce reply ${JSON.stringify(r)}`);
      base.set(r.partition, BigInt(r.baseOffset));
    }
    // kafkajs's default partitioner is deterministic: ask it where each message went.
    const partitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = Array.from({ length: PARTITIONS }, (_, p) => ({ partitionId: p, leader: 1 }));
    const nextIdx = new Map();
    for (let i = 0; i < PER_CODEC; i++) {
      const m = messages[i];
      const p = partitioner({ topic, partitionMetadata, message: m });
      if (!base.has(p)) fail(`${codec}: no produce reply for partition ${p}`);
      const k = nextIdx.get(p) || 0n;
      nextIdx.set(p, k + 1n);
      const off = base.get(p) + k;
      sent.set(`${p}:${off}`, { codec, seq: i, key: m.key, value: m.value, headers: m.headers, ts: m.timestamp });
    }
  }
  await producer.disconnect();
  const tEnd = Date.now();

  const consumer = kafka.consumer({ groupId: `${topic}-verify`, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      got.push({ partition, message });
      if (got.length >= sent.size) setTimeout(resolveDone, 1000); // a little longer: catch extras
    },
  });
  const timer = setTimeout(resolveDone, 60000);
  await done;
  clearTimeout(timer);
  await consumer.disconnect();

  const seen = new Set();
  const lastOff = new Map();
  const keyLast = new Map();
  const counts = new Map(CODECS.map(([c]) => [c, 0]));
  for (const { partition, message } of got) {
    const off = BigInt(message.offset);
    const pos = `${partition}:${off}`;
    if (seen.has(pos)) fail(`${pos} read twice`);
    seen.add(pos);
    if (lastOff.has(partition) && off <= lastOff.get(partition)) fail(`partition ${partition}: offset ${off} after ${lastOff.get(partition)}`);
    lastOff.set(partition, off);
    const s = sent.get(pos);
    if (!s) fail(`unexpected record at ${pos}: ${message.value}`);
    if (String(message.key) !== s.key || String(message.value) !== s.value) {
      fail(`${pos}: got ${message.key}=${message.value}, want ${s.key}=${s.value}`);
    }
    const h = message.headers || {};
    const names = Object.keys(h);
    if (names.join(',') !== 'codec,seq,bin') fail(`${pos}: header names ${names}`);
    for (const n of names) {
      if (!Buffer.from(s.headers[n]).equals(Buffer.from(h[n]))) fail(`${pos}: header ${n}=${h[n]}, want ${s.headers[n]}`);
    }
    if (message.timestamp !== s.ts) fail(`${pos}: timestamp ${message.timestamp}, want ${s.ts}`);
    const ts = Number(message.timestamp);
    if (ts < tStart - 5000 || ts > tEnd + 5000) fail(`${pos}: timestamp ${ts} outside [${tStart}, ${tEnd}]`);
    const kk = `${s.codec}/${s.key}`;
    if (keyLast.has(kk) && s.seq <= keyLast.get(kk)) fail(`${kk}: seq ${s.seq} after ${keyLast.get(kk)}`);
    keyLast.set(kk, s.seq);
    counts.set(s.codec, counts.get(s.codec) + 1);
  }
  for (const [codec] of CODECS) {
    if (counts.get(codec) !== PER_CODEC) fail(`${codec}: read ${counts.get(codec)} records, want ${PER_CODEC}`);
    const parts = new Set([...sent].filter(([, v]) => v.codec === codec).map(([k]) => k.split(':')[0]));
    console.log(`kafkajs codec=${codec}: ${PER_CODEC} records ok (partitions ${[...parts].sort()})`);
  }
  console.log('kafkajs: skipped codecs snappy, lz4, zstd (kafkajs ships no codec for them)');
}

main().then(() => process.exit(0), (e) => fail(e && e.stack ? e.stack : String(e)));
