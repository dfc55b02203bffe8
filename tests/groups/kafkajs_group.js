#!/usr/bin/env node
// kafkajs 2.2.4 consumer group: two members of one group share a 4-partition topic.
//
// Usage: node kafkajs_group.js BOOTSTRAP TOPIC GROUP
// (kafkajs is the one scripts/install-test-deps.sh installs into tests/compat/kafkajs/node_modules)
//
// Run by crates/cli/tests/t71_group_clients.rs, which creates TOPIC with 4 partitions.
//
// What it does: two consumers with the same groupId subscribe (fromBeginning) and run the
// classic `consumer.run({ eachMessage })` loop (auto-commit on). Once both reported a GROUP_JOIN
// with non-empty, disjoint assignments covering all four partitions, 100 records per partition
// are produced. After both consumed everything they disconnect (kafkajs commits on the way out).
// Then 5 more records per partition are produced and a fresh consumer of the same group runs.
// Checks (failures are listed in the RESULT line and make the exit status 1):
// - each member's assignment is non-empty, they are disjoint and cover all four partitions;
// - no member change while consuming: no GROUP_JOIN or REBALANCING after the stable point;
// - every produced record was consumed exactly once, by the member owning its partition;
// - admin.fetchOffsets shows the group's committed offsets at 100 on every partition;
// - the fresh consumer resumes at the committed offsets: it gets exactly the 20 new records
//   (offsets 100-104 of each partition) and nothing that was consumed before.
// Prints one `RESULT {json}` line.
'use strict';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const path = require('path');
const { Kafka, logLevel } = require(path.join(__dirname, '..', 'compat', 'kafkajs', 'node_modules', 'kafkajs'));

const PARTITIONS = 4;
const PER_PARTITION = 100;
const MORE = 5;
const STEP_TIMEOUT_MS = 45000;

const [bootstrap, topic, group] = process.argv.slice(2);
const failures = [];
const log = (m) => console.log(`kafkajs-group: ${m}`);
const fail = (m) => { log(`FAIL: ${m}`); failures.push(m); };
const kafka = new Kafka({ clientId: 'runnel-group-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN,
  retry: { retries: 10, initialRetryTime: 100 } });

async function waitFor(what, cond, timeout = STEP_TIMEOUT_MS) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`timed out waiting for ${what}`);
  return false;
}

function member(name) {
  const m = { name, joins: [], rebalances: 0, assignment: [], got: [] };
  m.consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 500,
    rebalanceTimeout: 10000, maxWaitTimeInMs: 200 });
  m.consumer.on(m.consumer.events.GROUP_JOIN, (e) => {
    m.assignment = (e.payload.memberAssignment[topic] || []).slice().sort();
    m.joins.push({ assignment: m.assignment, leader: e.payload.isLeader });
  });
  m.consumer.on(m.consumer.events.REBALANCING, () => { m.rebalances += 1; });
  m.start = async () => {
    await m.consumer.connect();
    await m.consumer.subscribe({ topics: [topic], fromBeginning: true });
    await m.consumer.run({
      eachMessage: async ({ partition, message }) => {
        m.got.push([partition, Number(message.offset)]);
      },
    });
  };
  return m;
}

async function produce(from, n) {
  const producer = kafka.producer();
  await producer.connect();
  for (let p = 0; p < PARTITIONS; p++) {
    const messages = [];
    for (let i = from; i < from + n; i++) messages.push({ value: `p${p}-${i}` });
    await producer.send({ topic, acks: -1, messages: messages.map((x) => ({ ...x, partition: p })) });
  }
  await producer.disconnect();
}

async function main() {
  const result = {};
  const a = member('a');
  const b = member('b');
  await Promise.all([a.start(), b.start()]);
  const stable = () => a.assignment.length > 0 && b.assignment.length > 0
    && new Set([...a.assignment, ...b.assignment]).size === PARTITIONS
    && a.assignment.length + b.assignment.length === PARTITIONS;
  let ok = await waitFor('two members with disjoint non-empty assignments', stable);
  result.assignments = { a: a.assignment, b: b.assignment };
  const joinsAt = [a.joins.length, b.joins.length];
  const rebalancesAt = [a.rebalances, b.rebalances];
  if (ok) {
    await produce(0, PER_PARTITION);
    ok = await waitFor('all records consumed',
      () => a.got.length + b.got.length >= PARTITIONS * PER_PARTITION);
  }
  if (a.joins.length !== joinsAt[0] || b.joins.length !== joinsAt[1]
      || a.rebalances !== rebalancesAt[0] || b.rebalances !== rebalancesAt[1]) {
    fail(`membership changed while consuming: joins ${JSON.stringify([a.joins, b.joins])}`);
  }
  const seen = new Map();
  for (const m of [a, b]) {
    for (const [p, o] of m.got) {
      const k = `${p}@${o}`;
      seen.set(k, (seen.get(k) || 0) + 1);
      if (!m.assignment.includes(p)) fail(`${m.name} consumed ${k} outside its assignment`);
    }
  }
  const dups = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
  if (dups.length) fail(`${dups.length} records consumed more than once, e.g. ${dups.slice(0, 5)}`);
  for (let p = 0; p < PARTITIONS; p++) {
    for (let o = 0; o < PER_PARTITION; o++) {
      if (!seen.has(`${p}@${o}`)) { fail(`record ${p}@${o} never consumed`); break; }
    }
  }
  result.consumed = { a: a.got.length, b: b.got.length };
  await Promise.all([a.consumer.disconnect(), b.consumer.disconnect()]);

  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const committed = {};
  for (const t of offsets) for (const p of t.partitions) committed[p.partition] = Number(p.offset);
  result.committed = committed;
  for (let p = 0; p < PARTITIONS; p++) {
    if (committed[p] !== PER_PARTITION) fail(`committed offset of partition ${p} is ${committed[p]}, want ${PER_PARTITION}`);
  }
  await admin.disconnect();

  await produce(PER_PARTITION, MORE);
  const c = member('fresh');
  await c.start();
  ok = await waitFor('the fresh member resumed', () => {
    const got = new Set(c.got.map(([p, o]) => `${p}@${o}`));
    for (let p = 0; p < PARTITIONS; p++) {
      for (let o = PER_PARTITION; o < PER_PARTITION + MORE; o++) if (!got.has(`${p}@${o}`)) return false;
    }
    return true;
  });
  const old = c.got.filter(([, o]) => o < PER_PARTITION);
  if (old.length) fail(`fresh member re-consumed ${old.length} committed records, e.g. ${JSON.stringify(old.slice(0, 5))}`);
  result.fresh = c.got.length;
  await c.consumer.disconnect();
  result.ok = failures.length === 0;
  result.failures = failures;
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => { fail(`error: ${e.stack || e}`); console.log(`RESULT ${JSON.stringify({ ok: false, failures })}`); process.exit(1); });
