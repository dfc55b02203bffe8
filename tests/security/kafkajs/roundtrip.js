#!/usr/bin/env node
// kafkajs 2.2.4 over a secured listener.
//
// Usage: node roundtrip.js BOOTSTRAP TOPIC GROUP [KEY=VALUE...]   (keys: ../README.md)
// (kafkajs is the one scripts/install-test-deps.sh installs into tests/compat/kafkajs/node_modules)
//
// Mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (SASL_PLAINTEXT, SASL_SSL), and SSL with or
// without a client certificate (Node's TLS: ca, cert, key, passphrase; the host name is checked).
// Checks (each failure is listed in the RESULT line and makes the exit status 1):
// - admin.createTopics creates TOPIC (3 partitions) and admin.listTopics shows it;
// - a producer (acks=-1) gets all 30 records acknowledged;
// - a consumer of GROUP (fromBeginning, consumer.run with eachMessage) reads exactly those 30
//   records; after it disconnects, admin.fetchOffsets shows the group's committed offsets
//   adding up to 30.
// Prints one `RESULT {json}` line.
'use strict';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel } = require(path.join(__dirname, '..', '..', 'compat', 'kafkajs', 'node_modules', 'kafkajs'));

const PARTITIONS = 3;
const RECORDS = 30;
const KEYS = 5;
const STEP_TIMEOUT_MS = 45000;
const KNOWN = new Set(['security.protocol', 'sasl.mechanism', 'sasl.username', 'sasl.password',
  'ssl.ca.location', 'ssl.keystore.location', 'ssl.key.password', 'admin']);

const [bootstrap, topic, group, ...rest] = process.argv.slice(2);
const settings = { 'security.protocol': 'PLAINTEXT', admin: '1' };
for (const arg of rest) {
  const i = arg.indexOf('=');
  const key = i < 0 ? arg : arg.slice(0, i);
  if (i < 0 || !KNOWN.has(key)) {
    console.error(`unknown setting ${arg}`);
    process.exit(2);
  }
  settings[key] = arg.slice(i + 1);
}
const protocol = settings['security.protocol'].toUpperCase();

const failures = [];
const facts = {};
const log = (m) => console.log(`kafkajs: ${m}`);
const fail = (m) => { log(`FAIL: ${m}`); failures.push(m); };

function finish() {
  const result = { client: 'kafkajs', ok: failures.length === 0, failures, ...facts };
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(failures.length === 0 ? 0 : 1);
}

function clientConfig() {
  const conf = {
    clientId: 'runnel-security-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    requestTimeout: 30000,
    // An authentication failure is final: retrying only hides it behind a timeout.
    retry: { retries: 3, initialRetryTime: 200 },
  };
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    const ssl = { rejectUnauthorized: true };
    if (settings['ssl.ca.location']) ssl.ca = [fs.readFileSync(settings['ssl.ca.location'], 'utf8')];
    if (settings['ssl.keystore.location']) {
      // One PEM file with the key and the chain: Node picks each out of it.
      const pem = fs.readFileSync(settings['ssl.keystore.location'], 'utf8');
      ssl.cert = pem;
      ssl.key = pem;
    }
    if (settings['ssl.key.password']) ssl.passphrase = settings['ssl.key.password'];
    conf.ssl = ssl;
  }
  if (protocol.startsWith('SASL_')) {
    conf.sasl = {
      mechanism: settings['sasl.mechanism'].toLowerCase(),
      username: settings['sasl.username'],
      password: settings['sasl.password'],
    };
  }
  return conf;
}

async function waitFor(what, cond) {
  const end = Date.now() + STEP_TIMEOUT_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  const kafka = new Kafka(clientConfig());
  const admin = kafka.admin();
  await admin.connect();
  if (settings.admin === '1') {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    if (!created) fail('createTopics returned false (the topic existed)');
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) fail(`listTopics does not show ${topic}: ${topics}`);
    facts.admin = 'createTopics, listTopics';
  }

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < RECORDS; i++) messages.push({ key: `k${i % KEYS}`, value: `kafkajs-${i}` });
  const reply = await producer.send({ topic, acks: -1, messages });
  const produced = new Set();
  if (reply.every((r) => r.errorCode === 0)) {
    for (const m of messages) produced.add(m.value);
  } else {
    fail(`produce reply ${JSON.stringify(reply)}`);
  }
  await producer.disconnect();

  const consumed = [];
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => { consumed.push(message.value.toString()); } });
  try {
    await waitFor(`${produced.size} records`, () => consumed.length >= produced.size);
  } catch (e) {
    fail(e.message);
  }
  await consumer.disconnect(); // commits the consumed offsets

  facts.produced = produced.size;
  facts.consumed = consumed.length;
  if (produced.size !== RECORDS) fail(`${produced.size} of ${RECORDS} records acknowledged`);
  const missing = [...produced].filter((v) => !consumed.includes(v));
  if (missing.length) fail(`${missing.length} acknowledged records not consumed, e.g. ${missing.slice(0, 3)}`);
  if (new Set(consumed).size !== consumed.length) fail('a record was consumed twice');
  if (consumed.some((v) => !produced.has(v))) fail('consumed records that were not produced');

  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const total = offsets[0].partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  if (total !== produced.size) fail(`committed offsets add up to ${total}, want ${produced.size}`);
  await admin.disconnect();
}

main().then(finish, (e) => {
  fail(`${e.name}: ${e.message}`);
  finish();
});
