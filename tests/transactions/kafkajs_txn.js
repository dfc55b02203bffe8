#!/usr/bin/env node
// Kafka transactions with kafkajs 2.2.4: a transactional producer and read_committed consumers.
//
// Usage: node kafkajs_txn.js BOOTSTRAP T1 T2 IN GROUP
// (kafkajs is the one scripts/install-test-deps.sh installs into tests/compat/kafkajs/node_modules)
//
// Run by crates/cli/tests/t75_transactions.rs, which creates T1, T2 and IN with 3 partitions
// each. One producer with `transactionalId`, `idempotent: true`, `maxInFlightRequests: 1`:
// - A: 2 records per partition of T1 and of T2 in one `sendBatch`, committed;
// - B: 2 records per partition of T1 and of T2 (two `send`s), aborted;
// - IN gets 10 plain records per partition; a consumer of GROUP (autoCommit off) reads them all
//   and leaves the group without committing;
// - C: a copy of each IN record (value `C-<value>`) to the same partition of T1, and
//   `sendOffsets` for GROUP at IN's end offsets, committed;
// - D: 2 records per partition of T2 and `sendOffsets` for GROUP at offset 1 everywhere, aborted.
// Checks (failures are listed in the RESULT line and make the exit status 1):
// - GROUP's committed offsets (admin.fetchOffsets) are IN's end offsets after C, and still are
//   after D's abort;
// - a new consumer of GROUP (readUncommitted false) resumes there: it gets exactly 3 records
//   produced to IN afterwards, none of the first 30;
// - a consumer with `readUncommitted: false` gets exactly A's and C's records, per partition in
//   produce order, none twice, none of B or D;
// - a consumer with `readUncommitted: true` gets A, B, C and D (the aborted records are in the
//   log, so the check above is not vacuous).
// Prints one `RESULT {json}` line.
'use strict';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const path = require('path');
const { Kafka, logLevel } = require(path.join(__dirname, '..', 'compat', 'kafkajs', 'node_modules', 'kafkajs'));

const PARTITIONS = 3;
const PER_PARTITION = 2;
const INPUT_PER_PARTITION = 10;
const STEP_TIMEOUT_MS = 30000;
const GRACE_MS = 2000;

const [bootstrap, t1, t2, input, group] = process.argv.slice(2);
const failures = [];
const result = {};
const log = (m) => console.log(`kafkajs-txn: ${m}`);
const fail = (m) => { log(`FAIL: ${m}`); failures.push(m); };
const kafka = new Kafka({ clientId: 'runnel-txn-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN,
  retry: { retries: 10, initialRetryTime: 100 } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, cond, timeout = STEP_TIMEOUT_MS) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(50);
  }
  fail(`timed out waiting for ${what}`);
  return false;
}

/** `n` records per partition of `topic`, values LABEL-TOPIC-P-I: [{ topic, partition, value }]. */
function records(label, topic, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < PARTITIONS; p++) out.push({ topic, partition: p, value: `${label}-${topic}-${p}-${i}` });
  }
  return out;
}

/** kafkajs topicMessages of records. */
function topicMessages(recs) {
  const by = new Map();
  for (const r of recs) {
    if (!by.has(r.topic)) by.set(r.topic, []);
    by.get(r.topic).push({ partition: r.partition, value: r.value });
  }
  return [...by].map(([topic, messages]) => ({ topic, messages }));
}

/** "topic/partition" -> [values in produce order]. */
function byPartition(recs) {
  const out = {};
  for (const r of recs) (out[`${r.topic}/${r.partition}`] ||= []).push(r.value);
  return out;
}

/** Reads `topics` from the beginning with a new group until `expect` records (then GRACE_MS
 * more, for records that must not be there) or STEP_TIMEOUT_MS: "topic/partition" -> [values in
 * offset order]. */
async function readBack(label, topics, readUncommitted, expect) {
  const c = kafka.consumer({ groupId: `kafkajs-txn-verify-${label}-${Date.now()}`, readUncommitted,
    maxWaitTimeInMs: 200, sessionTimeout: 10000, heartbeatInterval: 1000 });
  const got = {};
  let count = 0;
  await c.connect();
  await c.subscribe({ topics, fromBeginning: true });
  await c.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      (got[`${topic}/${partition}`] ||= []).push([Number(message.offset), message.value.toString()]);
      count += 1;
    },
  });
  if (await waitFor(`${label}: ${expect} records`, () => count >= expect)) await sleep(GRACE_MS);
  await c.disconnect();
  const out = {};
  for (const [k, v] of Object.entries(got)) out[k] = v.sort((a, b) => a[0] - b[0]).map((x) => x[1]);
  return out;
}

function total(got) {
  return Object.values(got).reduce((n, v) => n + v.length, 0);
}

function compare(label, got, want) {
  for (const k of [...new Set([...Object.keys(got), ...Object.keys(want)])].sort()) {
    const g = got[k] || [];
    const w = want[k] || [];
    if (JSON.stringify(g) === JSON.stringify(w)) continue;
    const missing = w.filter((v) => !g.includes(v));
    const unexpected = g.filter((v) => !w.includes(v));
    fail(`${label}: ${k} has ${g.length} records, want ${w.length}: missing ${JSON.stringify(missing.slice(0, 6))}, `
      + `unexpected ${JSON.stringify(unexpected.slice(0, 6))}, got ${JSON.stringify(g.slice(0, 8))}`);
  }
}

async function groupOffsets(admin) {
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [input] });
  const out = {};
  for (const t of offsets) for (const p of t.partitions) out[p.partition] = Number(p.offset);
  return out;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  const producer = kafka.producer({ transactionalId: 'runnel-kafkajs-txn', maxInFlightRequests: 1, idempotent: true });
  await producer.connect();

  // A: both topics in one sendBatch, committed.
  const A = [...records('A', t1, PER_PARTITION), ...records('A', t2, PER_PARTITION)];
  let txn = await producer.transaction();
  await txn.sendBatch({ acks: -1, topicMessages: topicMessages(A) });
  await txn.commit();
  log('A committed');

  // B: both topics, one send each, aborted.
  const B = [...records('B', t1, PER_PARTITION), ...records('B', t2, PER_PARTITION)];
  txn = await producer.transaction();
  for (const tm of topicMessages(B)) await txn.send({ acks: -1, ...tm });
  await txn.abort();
  log('B aborted');

  // The input, read by a consumer of GROUP that commits nothing.
  const plain = kafka.producer();
  await plain.connect();
  const inputs = records('in', input, INPUT_PER_PARTITION);
  await plain.sendBatch({ acks: -1, topicMessages: topicMessages(inputs) });
  const consumed = [];
  const gc = kafka.consumer({ groupId: group, maxWaitTimeInMs: 200, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await gc.connect();
  await gc.subscribe({ topics: [input], fromBeginning: true });
  await gc.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      consumed.push({ partition, offset: Number(message.offset), value: message.value.toString() });
    },
  });
  await waitFor('the input consumed', () => consumed.length >= inputs.length);
  await gc.disconnect();
  const ends = {};
  for (const m of consumed) ends[m.partition] = Math.max(ends[m.partition] || 0, m.offset + 1);
  result.input_ends = ends;
  const before = await groupOffsets(admin);
  result.group_offsets_before = before;
  if (Object.values(before).some((o) => o >= 0)) fail(`GROUP has committed offsets before C: ${JSON.stringify(before)}`);

  // C: copies to T1 with the group's offsets, committed.
  const C = consumed.sort((a, b) => a.offset - b.offset)
    .map((m) => ({ topic: t1, partition: m.partition, value: `C-${m.value}` }));
  txn = await producer.transaction();
  await txn.sendBatch({ acks: -1, topicMessages: topicMessages(C) });
  await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic: input,
    partitions: Object.entries(ends).map(([p, o]) => ({ partition: Number(p), offset: String(o) })) }] });
  await txn.commit();
  log('C committed');
  const afterC = await groupOffsets(admin);
  result.group_offsets_after_c = afterC;

  // D: T2 and offsets 1, aborted.
  const D = records('D', t2, PER_PARTITION);
  txn = await producer.transaction();
  await txn.sendBatch({ acks: -1, topicMessages: topicMessages(D) });
  await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic: input,
    partitions: Object.keys(ends).map((p) => ({ partition: Number(p), offset: '1' })) }] });
  await txn.abort();
  log('D aborted');
  const afterD = await groupOffsets(admin);
  result.group_offsets_after_d = afterD;
  for (const [p, o] of Object.entries(ends)) {
    if (afterC[p] !== o) fail(`after C, GROUP's committed offset of ${input}/${p} is ${afterC[p]}, want ${o}`);
    if (afterD[p] !== o) fail(`after D's abort, GROUP's committed offset of ${input}/${p} is ${afterD[p]}, want ${o}`);
  }
  await producer.disconnect();

  // GROUP resumes at C's offsets.
  const more = [0, 1, 2].map((p) => ({ topic: input, partition: p, value: `more-${p}` }));
  await plain.sendBatch({ acks: -1, topicMessages: topicMessages(more) });
  await plain.disconnect();
  const resumed = [];
  const rc = kafka.consumer({ groupId: group, maxWaitTimeInMs: 200, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await rc.connect();
  await rc.subscribe({ topics: [input], fromBeginning: true });
  await rc.run({ autoCommit: false, eachMessage: async ({ message }) => { resumed.push(message.value.toString()); } });
  if (await waitFor('GROUP resumed', () => resumed.length >= more.length)) await sleep(GRACE_MS);
  await rc.disconnect();
  result.group_resumed = resumed.length;
  if (JSON.stringify(resumed.slice().sort()) !== JSON.stringify(more.map((m) => m.value).sort())) {
    fail(`a new consumer of GROUP got ${JSON.stringify(resumed.slice(0, 8))} (${resumed.length}), want only the 3 new records`);
  }
  await admin.disconnect();

  const committed = [...A, ...C];
  let got = await readBack('rc', [t1, t2], false, committed.length);
  result.read_committed = total(got);
  compare('read_committed', got, byPartition(committed));
  const all = [...A, ...B, ...C, ...D];
  got = await readBack('ru', [t1, t2], true, all.length);
  result.read_uncommitted = total(got);
  // Within a partition, A then B then C or D (C and D never share a partition).
  compare('read_uncommitted', got, byPartition(all));

  result.ok = failures.length === 0;
  result.failures = failures;
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
  fail(`error: ${e.stack || e}`);
  result.ok = false;
  result.failures = failures;
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(1);
});
