#!/usr/bin/env node
// kafkajs 2.2.4 through a partition-leader SIGKILL.
//
// Usage: node kafkajs_failover.js BOOTSTRAP TOPIC CONTROL_DIR
// (kafkajs is the one scripts/install-test-deps.sh installs into tests/compat/kafkajs/node_modules)
//
// Run by crates/cli/tests/t61_client_failover.rs, which creates TOPIC (1 partition, RF=3,
// min.insync.replicas=2), waits until this program prints `progress ... acked=N` with N >= 100,
// SIGKILLs the partition's leader and then writes the kill time (epoch ms) to CONTROL_DIR/killed.
//
// What it does:
// - a producer sends `kafkajs-<n>` to partition 0 one at a time (each send awaited, acks=-1,
//   kafkajs retries), 10 ms apart; kafkajs's idempotent producer is experimental, so it is off
//   and duplicates from retries are reported, not failed;
// - meanwhile a group consumer (kafkajs has no other kind; subscribe fromBeginning) reads the
//   topic live;
// - after the kill it keeps producing until at least 200 sends were acknowledged after the kill
//   and 8 s have passed (or 45 s, whichever first);
// - the live consumer then gets up to 20 s to catch up with every acknowledged record;
// - finally a consumer in a fresh group reads the partition from the beginning up to the high
//   watermark that admin.fetchTopicOffsets reports.
// Checks (each failure is listed in the result and makes the exit status 1):
// - the producer continued: some sends were acknowledged after the kill;
// - every acknowledged record is in the final read at the offset the produce reply gave;
// - the live consumer continued after the kill (it consumed records acknowledged after the kill)
//   and consumed every acknowledged record.
// Prints `progress ...` lines while producing and one `RESULT {json}` line at the end.
'use strict';
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel } = require(path.join(__dirname, '..', 'compat', 'kafkajs', 'node_modules', 'kafkajs'));

const CLIENT = 'kafkajs';
const AFTER_KILL_ACKS = 200;
const MIN_AFTER_KILL_MS = 8000;
const MAX_AFTER_KILL_MS = 45000;
const MAX_WAIT_FOR_KILL_MS = 120000;
const SEND_INTERVAL_MS = 10;

const [bootstrap, topic, control] = process.argv.slice(2);
const killFile = path.join(control, 'killed');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => console.log(`${CLIENT}: ${msg}`);

function ours(value, sent) {
  const m = /^kafkajs-(\d+)$/.exec(value);
  return m !== null && Number(m[1]) < sent;
}

async function readAll(kafka) {
  // Partition 0 from the beginning to the high watermark; a fresh group, so nothing committed.
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const p0 = offsets.find((o) => o.partition === 0);
  const low = Number(p0.low);
  const high = Number(p0.high);
  const found = new Map(); // value -> [offsets]
  let next = low;
  if (high > low) {
    const consumer = kafka.consumer({ groupId: `${topic}-verify-${Date.now()}`, sessionTimeout: 10000, heartbeatInterval: 1000 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (partition !== 0) return;
        const v = message.value === null ? '<null>' : message.value.toString();
        const o = Number(message.offset);
        if (!found.has(v)) found.set(v, []);
        found.get(v).push(o);
        next = Math.max(next, o + 1);
      },
    });
    const end = Date.now() + 60000;
    while (next < high && Date.now() < end) await sleep(100);
    await consumer.disconnect();
  }
  return { found, low, high, next };
}

async function main() {
  const kafka = new Kafka({
    clientId: 'runnel-failover-kafkajs',
    brokers: bootstrap.split(','),
    logLevel: logLevel.ERROR,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 10 },
  });

  const acked = new Map(); // value -> {offset, at}
  const failed = new Map(); // value -> error
  const liveSeen = new Map(); // value -> first consumed ms
  const liveErrors = [];

  const live = kafka.consumer({ groupId: `${topic}-live`, sessionTimeout: 10000, heartbeatInterval: 1000 });
  live.on(live.events.CRASH, (e) => {
    if (liveErrors.length < 20) liveErrors.push(`crash: ${e.payload.error && e.payload.error.message} (restart: ${e.payload.restart})`);
  });
  await live.connect();
  await live.subscribe({ topic, fromBeginning: true });
  await live.run({
    eachMessage: async ({ message }) => {
      const v = message.value === null ? '<null>' : message.value.toString();
      if (!liveSeen.has(v)) liveSeen.set(v, Date.now());
    },
  });

  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  await producer.connect();

  let sent = 0;
  let killMs = null;
  let afterKill = 0;
  const started = Date.now();
  let lastProgress = 0;
  for (;;) {
    if (killMs === null && fs.existsSync(killFile)) {
      const text = fs.readFileSync(killFile, 'utf8').trim();
      if (text) {
        killMs = Number(text);
        log(`leader killed at ${killMs} (acked so far ${acked.size})`);
      }
    }
    if (killMs === null) {
      if (Date.now() - started > MAX_WAIT_FOR_KILL_MS) {
        log('the test never killed the leader');
        process.exit(2);
      }
    } else {
      const since = Date.now() - killMs;
      if ((afterKill >= AFTER_KILL_ACKS && since >= MIN_AFTER_KILL_MS) || since >= MAX_AFTER_KILL_MS) break;
    }
    const value = `${CLIENT}-${sent}`;
    sent += 1;
    try {
      const reply = await producer.send({ topic, acks: -1, messages: [{ partition: 0, value }] });
      const r = reply.find((x) => x.partition === 0);
      if (!r || r.errorCode !== 0) {
        failed.set(value, `reply ${JSON.stringify(reply)}`);
      } else {
        const at = Date.now();
        acked.set(value, { offset: Number(r.baseOffset), at });
        if (killMs !== null && at > killMs) afterKill += 1;
      }
    } catch (e) {
      failed.set(value, `${e.name}: ${e.message}`);
    }
    if (Date.now() - lastProgress >= 500) {
      lastProgress = Date.now();
      console.log(`progress sent=${sent} acked=${acked.size} failed=${failed.size} live=${liveSeen.size}`);
    }
    await sleep(SEND_INTERVAL_MS);
  }
  await producer.disconnect();

  const catchUp = Date.now() + 20000;
  const liveHasAll = () => [...acked.keys()].every((v) => liveSeen.has(v));
  while (Date.now() < catchUp && !liveHasAll()) await sleep(200);
  await live.disconnect();

  const { found, low, high, next } = await readAll(kafka);

  const num = (v) => Number(v.slice(CLIENT.length + 1));
  const missing = [...acked.keys()].filter((v) => !found.has(v)).sort((a, b) => num(a) - num(b));
  const wrongOffset = [...acked.entries()].filter(([v, a]) => found.has(v) && !found.get(v).includes(a.offset)).map(([v]) => v);
  const duplicates = [...found.entries()].filter(([, offs]) => offs.length > 1).map(([v]) => v);
  const neverSent = [...found.keys()].filter((v) => !ours(v, sent));
  const liveMissing = [...acked.keys()].filter((v) => !liveSeen.has(v)).sort((a, b) => num(a) - num(b));
  const liveAfterKill = [...liveSeen.keys()].filter((v) => acked.has(v) && acked.get(v).at > killMs).length;
  const afterAcks = [...acked.values()].map((a) => a.at).filter((t) => t > killMs).sort((a, b) => a - b);

  const failures = [];
  if (afterKill === 0) failures.push('no send was acknowledged after the leader was killed');
  if (missing.length) failures.push(`${missing.length} acknowledged records missing from the log, e.g. ${missing.slice(0, 10)}`);
  if (wrongOffset.length) failures.push(`${wrongOffset.length} acknowledged records at another offset, e.g. ${wrongOffset.slice(0, 10)}`);
  if (neverSent.length) failures.push(`records never sent: ${neverSent.slice(0, 10)}`);
  if (next < high) failures.push(`final read stopped at offset ${next} below the high watermark ${high}`);
  if (liveAfterKill === 0) failures.push('the live consumer consumed nothing acknowledged after the kill');
  if (liveMissing.length) failures.push(`the live consumer missed ${liveMissing.length} acknowledged records, e.g. ${liveMissing.slice(0, 10)}`);

  const result = {
    client: CLIENT,
    sent,
    acked: acked.size,
    failed: failed.size,
    failed_errors: [...new Set(failed.values())].slice(0, 5),
    acked_after_kill: afterKill,
    first_ack_after_kill_ms: afterAcks.length ? afterAcks[0] - killMs : null,
    final_read: [...found.values()].reduce((n, offs) => n + offs.length, 0),
    log_start: low,
    high_watermark: high,
    missing: missing.length,
    wrong_offset: wrongOffset.length,
    duplicates: duplicates.length, // reported only: the producer is not idempotent
    live_consumed: liveSeen.size,
    live_after_kill: liveAfterKill,
    live_missing: liveMissing.length,
    live_errors: liveErrors.slice(0, 5),
    failures,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  for (const f of failures) console.error(`${CLIENT}: FAIL: ${f}`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
  console.error(`${CLIENT}: FAIL: ${e.stack || e}`);
  process.exit(1);
});
