#!/usr/bin/env python3
"""ACL matrix: every API Runnel serves, allowed and denied, as Kafka's StandardAuthorizer decides.

Usage: acl_matrix.py SECTION SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP CERTS_DIR

Run by crates/cli/tests/t81_acls.rs against a broker with
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer,
super.users=User:admin, SCRAM-SHA-512 users admin/alice/bob (passwords <name>-secret) on the
SASL_SSL listener, an SSL listener mapping client certificates to User:<CN>, and
allow.everyone.if.no.acl.found=false, except for SECTION allow-everyone (true) and
no-authorizer (no authorizer at all). The super user sets ACLs with CreateAcls
(AdminClient.create_acls); alice and bob then act with confluent-kafka (librdkafka 2.16) clients,
and every outcome is compared with what Kafka answers (KafkaApis / AclApis / StandardAuthorizer):
"OK" or the error's name. Each case uses its own topics and groups.

Sections:
- topics: Metadata (all topics leave unauthorized ones out; a named topic without Describe,
  existing or not, gets TOPIC_AUTHORIZATION_FAILED; auto-creation needs Create), Produce
  (Write), idempotent producers (InitProducerId: Write on any topic, KIP-679, else
  CLUSTER_AUTHORIZATION_FAILED), Fetch (Read), ListOffsets (Describe), CreateTopics (Create on
  the topic or the cluster), DeleteTopics (Delete), DeleteRecords (Delete), DescribeConfigs and
  IncrementalAlterConfigs on topics (DescribeConfigs / AlterConfigs) and on the broker (on the
  cluster: CLUSTER_AUTHORIZATION_FAILED), CreatePartitions (Alter);
- groups: group consumers (FindCoordinator/JoinGroup need the group, GROUP_AUTHORIZATION_FAILED;
  Fetch needs the topic), OffsetCommit (group Read and topic Read), OffsetFetch (group
  Describe; topics without Describe are refused per partition), ListGroups (only the groups
  the principal may Describe, all with Describe on the cluster), DescribeGroups (Describe),
  DeleteGroups (Delete);
- cluster: DescribeAcls (Describe on the cluster), CreateAcls and DeleteAcls (Alter on the
  cluster), DescribeUserScramCredentials (Describe), AlterUserScramCredentials (Alter),
  ElectLeaders (Alter), the super user without any ACL;
- patterns: DENY beats ALLOW (also through a prefixed ALLOW and a User:* DENY), PREFIXED
  patterns, the literal wildcard "*", principal User:*, host matching, implied operations
  (Read/Write/Delete/Alter imply Describe, AlterConfigs implies DescribeConfigs, ALL implies
  everything), DENY Describe hides a topic;
- mtls: principals from client certificates (ssl.principal.mapping.rules) get their ACLs;
- allow-everyone: allow.everyone.if.no.acl.found=true allows a resource without any ACL, and
  any ACL on the resource (another principal's, a PREFIXED one, a DENY) turns that off;
- no-authorizer: the ACL APIs answer SECURITY_DISABLED.
Prints one line per check and one `RESULT {json}` line; exits 1 if any check failed.
"""
import json
import os
import sys
import time
import uuid

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition, ConsumerGroupTopicPartitions, ElectionType)
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, AlterConfigOpType,
                                   ConfigEntry, ConfigResource, NewPartitions, NewTopic,
                                   OffsetSpec, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

OK = "OK"
TOPIC_DENIED = "TOPIC_AUTHORIZATION_FAILED"
GROUP_DENIED = "GROUP_AUTHORIZATION_FAILED"
CLUSTER_DENIED = "CLUSTER_AUTHORIZATION_FAILED"
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
Op = AclOperation
TIMEOUT_S = 20

# librdkafka reports a fatal error (an idempotent producer's refused InitProducerId) as _FATAL
# with the broker's error in the text: recognize it by librdkafka's description.
DESCRIPTIONS = {
    "Topic authorization failed": TOPIC_DENIED,
    "Group authorization failed": GROUP_DENIED,
    "Cluster authorization failed": CLUSTER_DENIED,
}

section, bootstrap, ssl_bootstrap, certs = sys.argv[1:5]
failures = []
checks = 0
run_id = uuid.uuid4().hex[:6]


def name(suffix):
    """A resource name unique to this run (so a rerun against the same broker starts clean)."""
    return f"{suffix}-{run_id}"


def log(msg):
    print(f"acl-matrix[{section}]: {msg}", flush=True)


def check(case, got, want):
    global checks
    checks += 1
    if got == want:
        log(f"ok   {case}: {got}")
    else:
        log(f"FAIL {case}: want {want}, got {got}")
        failures.append(f"{case}: want {want}, got {got}")


def err_name(err):
    if err is None:
        return OK
    if err.code() == KafkaError._FATAL or err.name().startswith("_"):
        for text, code in DESCRIPTIONS.items():
            if text.lower() in err.str().lower():
                return code
    return err.name()


def exc_name(e):
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return err_name(e.args[0])
    return f"{type(e).__name__}: {e}"


def result(fut):
    try:
        fut.result(timeout=TIMEOUT_S)
        return OK
    except Exception as e:  # noqa: BLE001 - the error is the outcome
        return exc_name(e)


def conf(user, via="sasl"):
    if via == "ssl":
        keystore = os.path.join(certs, f"client-{user}.pem")
        return {"bootstrap.servers": ssl_bootstrap, "security.protocol": "SSL",
                "ssl.ca.location": os.path.join(certs, "ca.pem"),
                "ssl.certificate.location": keystore, "ssl.key.location": keystore}
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": f"{user}-secret", "ssl.ca.location": os.path.join(certs, "ca.pem")}


def admin(user="admin", via="sasl"):
    return AdminClient(conf(user, via))


ADMIN = admin()


def acl(principal, rtype, rname, op, perm=ALLOW, pattern=LITERAL, host="*"):
    if not principal.startswith("User:"):
        principal = f"User:{principal}"
    return AclBinding(rtype, rname, pattern, principal, host, op, perm)


def grant(*bindings):
    for b, fut in ADMIN.create_acls(list(bindings)).items():
        if result(fut) != OK:
            raise SystemExit(f"create_acls {b}: {result(fut)}")


def revoke(*bindings):
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                b.operation, b.permission_type) for b in bindings]
    for f, fut in ADMIN.delete_acls(filters).items():
        fut.result(timeout=TIMEOUT_S)


def create_topic(topic, partitions=1, records=0):
    fut = ADMIN.create_topics([NewTopic(topic, num_partitions=partitions,
                                        replication_factor=1)])[topic]
    r = result(fut)
    if r != OK:
        raise SystemExit(f"create {topic} as admin: {r}")
    if records:
        p = Producer({**conf("admin"), "acks": "all"})
        for i in range(records):
            p.produce(topic, f"r{i}".encode(), partition=0)
        if p.flush(TIMEOUT_S):
            raise SystemExit(f"produce to {topic} as admin timed out")
    return topic


def topics_seen(user, via="sasl"):
    return set(admin(user, via).list_topics(timeout=TIMEOUT_S).topics)


def metadata_for(user, topic):
    # A Metadata request naming the topic, with allow_auto_topic_creation set.
    a = AdminClient({**conf(user), "allow.auto.create.topics": True})
    md = a.list_topics(topic=topic, timeout=TIMEOUT_S)
    t = md.topics.get(topic)
    if t is None:
        return "MISSING"
    return err_name(t.error)


def produce(user, topic, idempotent=False, via="sasl"):
    errors, reports = [], []
    p = Producer({**conf(user, via), "acks": "all", "enable.idempotence": idempotent,
                  "message.timeout.ms": 15000, "error_cb": errors.append})
    try:
        p.produce(topic, b"v", on_delivery=lambda err, msg: reports.append(err))
    except KafkaException as e:
        return exc_name(e)
    p.flush(TIMEOUT_S)
    for e in errors:
        if e.fatal():
            return err_name(e)
    if not reports:
        return "NO DELIVERY REPORT"
    return err_name(reports[0])


def consume(user, topic, group=None, via="sasl"):
    """Subscribes as a member of `group`, or assigns partition 0 (with an own group id the
    user may Describe, for FindCoordinator) and reads one record; commits when in a group."""
    errors = []
    c = Consumer({**conf(user, via), "group.id": group or f"assign-{user}-{run_id}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "error_cb": errors.append})
    outcome = None
    try:
        if group:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline and outcome is None:
            msg = c.poll(0.3)
            if msg is not None and msg.error() is None:
                outcome = OK
            elif msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                outcome = err_name(msg.error())
            for e in errors:
                if "AUTHORIZATION" in e.name():
                    outcome = e.name()
        if outcome == OK and group:
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:
                outcome = f"commit: {exc_name(e)}"
    finally:
        c.close()
    return outcome or "NOTHING WITHIN TIMEOUT"


def admin_op(user, call):
    """Runs call(AdminClient) -> future or {key: future}; the first non-OK outcome or OK."""
    # The client must outlive its futures: a collected AdminClient fails them with _DESTROY.
    client = admin(user)
    try:
        futs = call(client)
    except Exception as e:  # noqa: BLE001 - the error is the outcome
        return exc_name(e)
    if not isinstance(futs, dict):
        futs = {None: futs}
    outcomes = [result(f) for f in futs.values()]
    bad = [o for o in outcomes if o != OK]
    return bad[0] if bad else OK


def group_offsets(user, group, topic):
    """OffsetFetch through list_consumer_group_offsets: OK, a group error, or the first
    partition error."""
    try:
        client = admin(user)
        futs = client.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
        res = futs[group].result(timeout=TIMEOUT_S)
    except Exception as e:  # noqa: BLE001
        return exc_name(e)
    for tp in res.topic_partitions:
        if tp.error is not None:
            return err_name(tp.error)
    return OK


def commit_offsets(user, group, topic, offset=1):
    """OffsetCommit through alter_consumer_group_offsets (an empty group, generation -1)."""
    try:
        client = admin(user)
        futs = client.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, offset)])])
        res = futs[group].result(timeout=TIMEOUT_S)
    except Exception as e:  # noqa: BLE001
        return exc_name(e)
    for tp in res.topic_partitions:
        if tp.error is not None:
            return err_name(tp.error)
    return OK


# ---- sections ----------------------------------------------------------------------------------

def section_topics():
    visible, hidden = create_topic(name("m-visible")), create_topic(name("m-hidden"))
    grant(acl("alice", TOPIC, visible, Op.DESCRIBE))
    seen = topics_seen("alice")
    check("Metadata(all): a topic with Describe is listed", visible in seen, True)
    check("Metadata(all): a topic without Describe is left out", hidden in seen, False)
    check("Metadata(all): bob without ACLs sees neither",
          bool({visible, hidden} & topics_seen("bob")), False)
    check("Metadata(topic) without Describe", metadata_for("alice", hidden), TOPIC_DENIED)
    check("Metadata(missing topic) without Describe hides that it does not exist",
          metadata_for("alice", name("m-missing")), TOPIC_DENIED)
    auto, auto_ok = name("m-auto"), name("m-auto-ok")
    grant(acl("alice", TOPIC, auto, Op.DESCRIBE), acl("alice", TOPIC, auto_ok, Op.DESCRIBE),
          acl("alice", TOPIC, auto_ok, Op.CREATE))
    check("Metadata auto-creation without Create", metadata_for("alice", auto), TOPIC_DENIED)
    # Kafka answers the request that creates the topic with LEADER_NOT_AVAILABLE (no leader yet).
    check("Metadata auto-creation with Create on the topic is authorized",
          metadata_for("alice", auto_ok) in (OK, "LEADER_NOT_AVAILABLE"), True)
    deadline = time.time() + TIMEOUT_S
    while auto_ok not in topics_seen("admin") and time.time() < deadline:
        time.sleep(0.2)
    check("the auto-created topic exists", auto_ok in topics_seen("admin"), True)

    t = create_topic(name("p-topic"))
    grant(acl("alice", TOPIC, t, Op.WRITE), acl("bob", TOPIC, t, Op.DESCRIBE))
    check("Produce with Write", produce("alice", t), OK)
    check("Produce with Describe only", produce("bob", t), TOPIC_DENIED)
    check("Produce without any ACL", produce("bob", create_topic(name("p-none"))), TOPIC_DENIED)
    check("idempotent Produce with Write on the topic (KIP-679)",
          produce("alice", t, idempotent=True), OK)
    check("idempotent Produce without Write anywhere: InitProducerId",
          produce("bob", t, idempotent=True), CLUSTER_DENIED)

    t = create_topic(name("f-topic"), records=2)
    grant(acl("alice", TOPIC, t, Op.READ), acl("bob", TOPIC, t, Op.DESCRIBE))
    grant(acl("alice", GROUP, "assign-", Op.DESCRIBE, pattern=PREFIXED),
          acl("bob", GROUP, "assign-", Op.DESCRIBE, pattern=PREFIXED))
    check("Fetch with Read", consume("alice", t), OK)
    check("Fetch with Describe only", consume("bob", t), TOPIC_DENIED)

    t = create_topic(name("lo-topic"), records=1)
    grant(acl("alice", TOPIC, t, Op.DESCRIBE))
    spec = {TopicPartition(t, 0): OffsetSpec.latest()}
    check("ListOffsets with Describe", admin_op("alice", lambda a: a.list_offsets(spec)), OK)
    check("ListOffsets without Describe", admin_op("bob", lambda a: a.list_offsets(spec)),
          TOPIC_DENIED)

    allowed, denied = name("ct-allowed"), name("ct-denied")
    grant(acl("alice", TOPIC, allowed, Op.CREATE), acl("bob", CLUSTER, "kafka-cluster", Op.CREATE))

    def create(topic):
        return lambda a: a.create_topics([NewTopic(topic, 1, 1)])
    check("CreateTopics with Create on the topic", admin_op("alice", create(allowed)), OK)
    check("CreateTopics without Create", admin_op("alice", create(denied)), TOPIC_DENIED)
    check("CreateTopics with Create on the cluster", admin_op("bob", create(name("ct-any"))), OK)

    dt_a, dt_b = create_topic(name("dt-a")), create_topic(name("dt-b"))
    grant(acl("alice", TOPIC, dt_a, Op.DELETE), acl("alice", TOPIC, dt_b, Op.DESCRIBE))
    check("DeleteTopics with Delete", admin_op("alice", lambda a: a.delete_topics([dt_a])), OK)
    check("DeleteTopics with Describe only",
          admin_op("alice", lambda a: a.delete_topics([dt_b])), TOPIC_DENIED)
    check("DeleteTopics without any ACL", admin_op("bob", lambda a: a.delete_topics([dt_b])),
          TOPIC_DENIED)

    t = create_topic(name("dr-topic"), records=3)
    grant(acl("alice", TOPIC, t, Op.DELETE), acl("bob", TOPIC, t, Op.READ))
    tps = [TopicPartition(t, 0, 1)]
    check("DeleteRecords with Delete", admin_op("alice", lambda a: a.delete_records(tps)), OK)
    check("DeleteRecords with Read only", admin_op("bob", lambda a: a.delete_records(tps)),
          TOPIC_DENIED)

    t = create_topic(name("cfg-topic"))
    res = ConfigResource(ConfigResource.Type.TOPIC, t)
    grant(acl("alice", TOPIC, t, Op.DESCRIBE_CONFIGS), acl("bob", TOPIC, t, Op.ALTER_CONFIGS))

    def alter(r, key, value):
        r = ConfigResource(r.restype, r.name, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
        return lambda a: a.incremental_alter_configs([r])
    check("DescribeConfigs(topic) with DescribeConfigs",
          admin_op("alice", lambda a: a.describe_configs([res])), OK)
    check("DescribeConfigs(topic) with AlterConfigs (implied)",
          admin_op("bob", lambda a: a.describe_configs([res])), OK)
    check("IncrementalAlterConfigs(topic) with DescribeConfigs only",
          admin_op("alice", alter(res, "retention.ms", "3600000")), TOPIC_DENIED)
    check("IncrementalAlterConfigs(topic) with AlterConfigs",
          admin_op("bob", alter(res, "retention.ms", "3600000")), OK)
    other = ConfigResource(ConfigResource.Type.TOPIC, create_topic(name("cfg-other")))
    check("DescribeConfigs(topic) without ACLs",
          admin_op("alice", lambda a: a.describe_configs([other])), TOPIC_DENIED)
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    check("DescribeConfigs(broker) without DescribeConfigs on the cluster",
          admin_op("alice", lambda a: a.describe_configs([broker])), CLUSTER_DENIED)
    check("IncrementalAlterConfigs(broker) without AlterConfigs on the cluster",
          admin_op("alice", alter(broker, "log.retention.ms", "3600000")), CLUSTER_DENIED)
    grant(acl("bob", CLUSTER, "kafka-cluster", Op.DESCRIBE_CONFIGS))
    check("DescribeConfigs(broker) with DescribeConfigs on the cluster",
          admin_op("bob", lambda a: a.describe_configs([broker])), OK)

    t = create_topic(name("cp-topic"))
    grant(acl("alice", TOPIC, t, Op.ALTER), acl("bob", TOPIC, t, Op.DESCRIBE))
    check("CreatePartitions with Describe only",
          admin_op("bob", lambda a: a.create_partitions([NewPartitions(t, 2)])), TOPIC_DENIED)
    check("CreatePartitions with Alter",
          admin_op("alice", lambda a: a.create_partitions([NewPartitions(t, 2)])), OK)


def section_groups():
    t = create_topic(name("g-topic"), records=2)
    grant(acl("alice", TOPIC, t, Op.READ))
    g_ok, g_none = name("g-member"), name("g-no-acl")
    grant(acl("alice", GROUP, g_ok, Op.READ))
    check("group consumer with Read on the topic and the group", consume("alice", t, g_ok), OK)
    check("group consumer without an ACL on the group", consume("alice", t, g_none), GROUP_DENIED)
    t2 = create_topic(name("g-topic2"), records=1)
    g2 = name("g-member2")
    grant(acl("alice", TOPIC, t2, Op.DESCRIBE), acl("alice", GROUP, g2, Op.READ))
    check("group consumer with Read on the group, Describe only on the topic",
          consume("alice", t2, g2), TOPIC_DENIED)

    lg_a, lg_b = name("lg-a"), name("lg-b")
    for g in (lg_a, lg_b):
        check(f"OffsetCommit as the super user creates {g}", commit_offsets("admin", g, t), OK)
    grant(acl("alice", GROUP, lg_a, Op.DESCRIBE), acl("alice", TOPIC, t, Op.DESCRIBE))

    def listed(user):
        try:
            client = admin(user)
            res = client.list_consumer_groups().result(timeout=TIMEOUT_S)
        except Exception as e:  # noqa: BLE001
            return exc_name(e)
        return {g.group_id for g in res.valid} & {lg_a, lg_b}
    check("ListGroups lists only the groups with Describe", listed("alice"), {lg_a})
    grant(acl("bob", CLUSTER, "kafka-cluster", Op.DESCRIBE))
    check("ListGroups with Describe on the cluster lists all", listed("bob"), {lg_a, lg_b})
    check("DescribeGroups with Describe",
          admin_op("alice", lambda a: a.describe_consumer_groups([lg_a])), OK)
    check("DescribeGroups without Describe",
          admin_op("alice", lambda a: a.describe_consumer_groups([lg_b])), GROUP_DENIED)
    check("OffsetFetch with Describe on the group and the topic", group_offsets("alice", lg_a, t),
          OK)
    check("OffsetFetch without Describe on the group", group_offsets("alice", lg_b, t),
          GROUP_DENIED)
    t3 = create_topic(name("g-topic3"))
    check("OffsetFetch of a topic without Describe", group_offsets("alice", lg_a, t3),
          TOPIC_DENIED)
    check("OffsetCommit without Read on the group", commit_offsets("alice", lg_a, t), GROUP_DENIED)
    grant(acl("alice", GROUP, lg_a, Op.READ))
    check("OffsetCommit with Read on the group, not on the topic",
          commit_offsets("alice", lg_a, t3), TOPIC_DENIED)
    check("OffsetCommit with Read on the group and the topic", commit_offsets("alice", lg_a, t), OK)
    grant(acl("alice", GROUP, lg_a, Op.DELETE))
    check("DeleteGroups without Delete",
          admin_op("alice", lambda a: a.delete_consumer_groups([lg_b])), GROUP_DENIED)
    check("DeleteGroups with Delete",
          admin_op("alice", lambda a: a.delete_consumer_groups([lg_a])), OK)


def section_cluster():
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    check("DescribeAcls without Describe on the cluster",
          admin_op("alice", lambda a: a.describe_acls(f)), CLUSTER_DENIED)
    probe_acl = acl("bob", TOPIC, name("never"), Op.READ)
    check("CreateAcls without Alter on the cluster",
          admin_op("alice", lambda a: a.create_acls([probe_acl])), CLUSTER_DENIED)
    check("DeleteAcls without Alter on the cluster",
          admin_op("alice", lambda a: a.delete_acls([f])), CLUSTER_DENIED)
    check("DescribeUserScramCredentials without Describe on the cluster",
          admin_op("alice", lambda a: a.describe_user_scram_credentials(["bob"])), CLUSTER_DENIED)
    upsert = UserScramCredentialUpsertion(
        "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol-secret")
    check("AlterUserScramCredentials without Alter on the cluster",
          admin_op("alice", lambda a: a.alter_user_scram_credentials([upsert])), CLUSTER_DENIED)
    t = create_topic(name("el-topic"))
    check("ElectLeaders without Alter on the cluster",
          admin_op("alice", lambda a: a.elect_leaders(ElectionType.PREFERRED,
                                                      [TopicPartition(t, 0)])), CLUSTER_DENIED)
    grant(acl("alice", CLUSTER, "kafka-cluster", Op.DESCRIBE))
    check("DescribeAcls with Describe on the cluster",
          admin_op("alice", lambda a: a.describe_acls(f)), OK)
    check("DescribeUserScramCredentials with Describe on the cluster",
          admin_op("alice", lambda a: a.describe_user_scram_credentials(["bob"])), OK)
    grant(acl("bob", CLUSTER, "kafka-cluster", Op.ALTER))
    check("CreateAcls with Alter on the cluster",
          admin_op("bob", lambda a: a.create_acls([probe_acl])), OK)
    check("AlterUserScramCredentials with Alter on the cluster",
          admin_op("bob", lambda a: a.alter_user_scram_credentials([upsert])), OK)
    elected = admin_op("bob", lambda a: a.elect_leaders(ElectionType.PREFERRED,
                                                          [TopicPartition(t, 0)]))
    check("ElectLeaders with Alter on the cluster is authorized",
          elected != CLUSTER_DENIED, True)

    # The super user has no ACL at all.
    t = name("su-topic")
    check("super user: CreateTopics",
          admin_op("admin", lambda a: a.create_topics([NewTopic(t, 1, 1)])), OK)
    check("super user: Produce", produce("admin", t), OK)
    check("super user: group consumer", consume("admin", t, name("su-group")), OK)
    check("super user: DescribeAcls", admin_op("admin", lambda a: a.describe_acls(f)), OK)
    check("super user: DeleteTopics", admin_op("admin", lambda a: a.delete_topics([t])), OK)


def section_patterns():
    grant(acl("alice", GROUP, "assign-", Op.DESCRIBE, pattern=PREFIXED),
          acl("bob", GROUP, "assign-", Op.DESCRIBE, pattern=PREFIXED))
    t = create_topic(name("dn-topic"))
    grant(acl("alice", TOPIC, t, Op.WRITE), acl("alice", TOPIC, t, Op.WRITE, perm=DENY))
    check("DENY beats ALLOW on the same resource", produce("alice", t), TOPIC_DENIED)
    prefix = name("dp") + "-"
    open_t, locked = create_topic(prefix + "open", records=1), create_topic(prefix + "locked",
                                                                           records=1)
    grant(acl("alice", TOPIC, prefix, Op.ALL, pattern=PREFIXED),
          acl("alice", TOPIC, locked, Op.WRITE, perm=DENY))
    check("PREFIXED ALLOW ALL", produce("alice", open_t), OK)
    check("a literal DENY Write beats a PREFIXED ALLOW ALL", produce("alice", locked),
          TOPIC_DENIED)
    check("... and denies only Write: Fetch through ALLOW ALL", consume("alice", locked), OK)

    pf = name("pf") + "-"
    grant(acl("alice", TOPIC, pf, Op.WRITE, pattern=PREFIXED))
    check("PREFIXED: a topic with the prefix", produce("alice", create_topic(pf + "one")), OK)
    check("PREFIXED: a topic without it",
          produce("alice", create_topic(name("pfx"))), TOPIC_DENIED)

    wc = create_topic(name("wc-any"), records=1)
    grant(acl("bob", TOPIC, "*", Op.READ))
    check("the literal wildcard '*' matches any topic", consume("bob", wc), OK)
    revoke(acl("bob", TOPIC, "*", Op.READ))
    check("... and once removed no longer does", consume("bob", wc), TOPIC_DENIED)

    pw = create_topic(name("pw-topic"), records=1)
    grant(acl("User:*", TOPIC, pw, Op.READ))
    check("principal User:* matches bob", consume("bob", pw), OK)
    grant(acl("alice", TOPIC, pw, Op.WRITE), acl("User:*", TOPIC, pw, Op.WRITE, perm=DENY))
    check("a DENY for User:* beats alice's ALLOW", produce("alice", pw), TOPIC_DENIED)

    host_ok, host_no = create_topic(name("host-ok")), create_topic(name("host-no"))
    grant(acl("alice", TOPIC, host_ok, Op.WRITE, host="127.0.0.1"),
          acl("alice", TOPIC, host_no, Op.WRITE, host="10.9.8.7"))
    check("an ACL for the client's host", produce("alice", host_ok), OK)
    check("an ACL for another host", produce("alice", host_no), TOPIC_DENIED)

    implied = {}
    for op, label in [(Op.READ, "Read"), (Op.WRITE, "Write"), (Op.DELETE, "Delete"),
                      (Op.ALTER, "Alter"), (Op.ALL, "All")]:
        t = create_topic(name(f"imp-{label.lower()}"))
        implied[label] = t
        grant(acl("alice", TOPIC, t, op))
    seen = topics_seen("alice")
    for label, t in implied.items():
        check(f"{label} implies Describe (Metadata lists the topic)", t in seen, True)
    t = create_topic(name("imp-ac"))
    grant(acl("alice", TOPIC, t, Op.ALTER_CONFIGS))
    res = ConfigResource(ConfigResource.Type.TOPIC, t)
    check("AlterConfigs implies DescribeConfigs",
          admin_op("alice", lambda a: a.describe_configs([res])), OK)
    check("Read does not imply Write", produce("alice", implied["Read"]), TOPIC_DENIED)
    check("All implies Write", produce("alice", implied["All"]), OK)
    res = ConfigResource(ConfigResource.Type.TOPIC, implied["All"])
    check("All implies DescribeConfigs",
          admin_op("alice", lambda a: a.describe_configs([res])), OK)
    check("All implies Delete", admin_op("alice", lambda a: a.delete_topics([implied["All"]])),
          OK)

    dd = create_topic(name("dd-topic"))
    grant(acl("alice", TOPIC, dd, Op.WRITE), acl("alice", TOPIC, dd, Op.DESCRIBE, perm=DENY))
    check("DENY Describe hides the topic from Metadata(all)", dd in topics_seen("alice"), False)
    check("DENY Describe: Produce fails at Metadata", produce("alice", dd), TOPIC_DENIED)


def section_mtls():
    t = create_topic(name("mt-topic"), records=1)
    grant(acl("alice", TOPIC, t, Op.WRITE))
    check("certificate CN=alice acts as User:alice", produce("alice", t, via="ssl"), OK)
    check("certificate CN=bob acts as User:bob", produce("bob", t, via="ssl"), TOPIC_DENIED)
    check("SCRAM alice and certificate alice are one principal", produce("alice", t), OK)
    t2 = name("mt-admin")
    check("certificate CN=admin is the super user",
          admin_op_via("admin", "ssl", lambda a: a.create_topics([NewTopic(t2, 1, 1)])), OK)


def admin_op_via(user, via, call):
    try:
        client = admin(user, via)
        futs = call(client)
    except Exception as e:  # noqa: BLE001
        return exc_name(e)
    outcomes = [result(f) for f in futs.values()]
    bad = [o for o in outcomes if o != OK]
    return bad[0] if bad else OK


def section_allow_everyone():
    free = name("ae-free")
    check("no ACL on the cluster: CreateTopics",
          admin_op("alice", lambda a: a.create_topics([NewTopic(free, 1, 1)])), OK)
    check("no ACL on the topic: Produce", produce("alice", free), OK)
    check("no ACL on the topic or group: group consumer",
          consume("alice", free, name("ae-group")), OK)
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    check("no ACL on the cluster: DescribeAcls", admin_op("bob", lambda a: a.describe_acls(f)), OK)

    owned = create_topic(name("ae-owned"), records=1)
    grant(acl("bob", TOPIC, owned, Op.READ))
    check("another principal's ACL on the topic: Produce", produce("alice", owned), TOPIC_DENIED)
    check("... while bob's own ACL holds", consume("bob", owned), OK)
    prefix = name("ae-pre") + "-"
    grant(acl("bob", TOPIC, prefix, Op.WRITE, pattern=PREFIXED))
    check("a PREFIXED ACL counts as an ACL on the topic",
          produce("alice", create_topic(prefix + "x")), TOPIC_DENIED)
    deny = create_topic(name("ae-deny"))
    grant(acl("bob", TOPIC, deny, Op.WRITE, perm=DENY))
    check("a DENY for bob counts as an ACL on the topic for alice", produce("alice", deny),
          TOPIC_DENIED)
    check("the super user is unaffected", produce("admin", deny), OK)


def section_no_authorizer():
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    check("DescribeAcls without an authorizer",
          admin_op("alice", lambda a: a.describe_acls(f)), "SECURITY_DISABLED")
    check("CreateAcls without an authorizer",
          admin_op("alice", lambda a: a.create_acls([acl("bob", TOPIC, "x", Op.READ)])),
          "SECURITY_DISABLED")
    check("DeleteAcls without an authorizer",
          admin_op("alice", lambda a: a.delete_acls([f])), "SECURITY_DISABLED")


SECTIONS = {
    "topics": section_topics,
    "groups": section_groups,
    "cluster": section_cluster,
    "patterns": section_patterns,
    "mtls": section_mtls,
    "allow-everyone": section_allow_everyone,
    "no-authorizer": section_no_authorizer,
}

if __name__ == "__main__":
    t0 = time.time()
    try:
        SECTIONS[section]()
    except SystemExit as e:
        failures.append(f"setup: {e}")
    except Exception as e:  # noqa: BLE001 - reported in the RESULT line
        failures.append(f"{type(e).__name__}: {e}")
    out = {"section": section, "ok": not failures, "checks": checks, "failures": failures,
           "seconds": round(time.time() - t0, 1)}
    print("RESULT " + json.dumps(out), flush=True)
    sys.exit(0 if not failures else 1)
