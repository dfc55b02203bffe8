#!/bin/sh
# Entrypoint of the Runnel image.
#
#   server [FLAG...]   run a broker configured from the environment (below), then FLAGs
#   create-topics      create the topics in RUNNEL_CREATE_TOPICS (idempotent, retried), exit
#   topics|configs|health|...   any other runnel subcommand, run as is
#   anything else      executed as a command (sh, ls, ...)
#
# Server environment (each optional; precedence: RUNNEL_CONFIG_FILE < these < RUNNEL_CFG_*):
#   RUNNEL_CONFIG_FILE          a server.properties file (--config)
#   RUNNEL_NODE_ID              node.id; "auto" takes the ordinal N of a host name ending in
#                               -N (a StatefulSet pod) plus RUNNEL_NODE_ID_OFFSET (default 0)
#   RUNNEL_DATA_DIR             log.dirs (image default /var/lib/runnel/data)
#   RUNNEL_LISTENERS            listeners, e.g. INTERNAL://:19092,EXTERNAL://:9092
#   RUNNEL_ADVERTISED_LISTENERS advertised.listeners, e.g.
#                               INTERNAL://runnel1:19092,EXTERNAL://localhost:9092
#   RUNNEL_VOTERS               controller.quorum.voters, ID@HOST:PORT,...
#   RUNNEL_RPC_LISTEN           rpc.listen
#   RUNNEL_CLUSTER_ID           the id of a new cluster (--cluster-id)
#   RUNNEL_ADD_SCRAM            a SCRAM credential a new cluster starts with (--add-scram), in
#                               Kafka's syntax, e.g. SCRAM-SHA-512=[name=admin,password=secret];
#                               ignored once the cluster exists
#   RUNNEL_CFG_<KEY>            any broker property: the key in upper case with dots as
#                               underscores, e.g. RUNNEL_CFG_MIN_INSYNC_REPLICAS=2
#                               sets min.insync.replicas=2
#   RUNNEL_LOG, RUNNEL_LOG_FORMAT  log filter (info) and format (json) of the server
#
# create-topics environment:
#   RUNNEL_CREATE_TOPICS        NAME:PARTITIONS:REPLICAS[:KEY=VALUE[;KEY=VALUE...]],...
#                               e.g. orders:3:3:min.insync.replicas=2,events:6:3
#   RUNNEL_BOOTSTRAP_SERVERS    where to create them (default localhost:9092)
#   RUNNEL_CREATE_TOPICS_TIMEOUT  seconds to keep retrying, e.g. while brokers start (120)
#   RUNNEL_COMMAND_CONFIG       a client properties file for secured listeners (--command-config:
#                               security.protocol, sasl.*, ssl.truststore.*)
set -eu

log() { echo "docker-entrypoint: $*" >&2; }

# RUNNEL_NODE_ID, with "auto" resolved from the host name.
node_id() {
    id=${RUNNEL_NODE_ID:-}
    if [ "$id" = auto ]; then
        host=$(hostname)
        ordinal=${host##*-}
        case "$ordinal" in
        '' | *[!0-9]*)
            log "RUNNEL_NODE_ID=auto needs a host name ending in -N, got '$host'"
            exit 2
            ;;
        esac
        id=$((ordinal + ${RUNNEL_NODE_ID_OFFSET:-0}))
    fi
    printf '%s' "$id"
}

server() {
    # The caller's flags come last (so their --set wins): append the environment's flags after
    # them, then rotate the caller's to the end.
    n=$#
    [ -n "${RUNNEL_CONFIG_FILE:-}" ] && set -- "$@" --config "$RUNNEL_CONFIG_FILE"
    node_id=$(node_id)
    [ -n "$node_id" ] && set -- "$@" --node-id "$node_id"
    [ -n "${RUNNEL_DATA_DIR:-}" ] && set -- "$@" --data-dir "$RUNNEL_DATA_DIR"
    [ -n "${RUNNEL_LISTENERS:-}" ] && set -- "$@" --set "listeners=$RUNNEL_LISTENERS"
    [ -n "${RUNNEL_ADVERTISED_LISTENERS:-}" ] &&
        set -- "$@" --set "advertised.listeners=$RUNNEL_ADVERTISED_LISTENERS"
    [ -n "${RUNNEL_VOTERS:-}" ] && set -- "$@" --voters "$RUNNEL_VOTERS"
    [ -n "${RUNNEL_RPC_LISTEN:-}" ] && set -- "$@" --rpc-listen "$RUNNEL_RPC_LISTEN"
    [ -n "${RUNNEL_CLUSTER_ID:-}" ] && set -- "$@" --cluster-id "$RUNNEL_CLUSTER_ID"
    [ -n "${RUNNEL_ADD_SCRAM:-}" ] && set -- "$@" --add-scram "$RUNNEL_ADD_SCRAM"
    # RUNNEL_CFG_LOG_RETENTION_HOURS=24 -> --set log.retention.hours=24 (sorted, so stable).
    cfg=$(env | LC_ALL=C sort | sed -n 's/^RUNNEL_CFG_\([A-Za-z0-9_]*\)=\(.*\)$/\1=\2/p')
    if [ -n "$cfg" ]; then
        while IFS= read -r kv; do
            key=$(printf '%s' "${kv%%=*}" | tr 'A-Z_' 'a-z.')
            set -- "$@" --set "$key=${kv#*=}"
        done <<EOF
$cfg
EOF
    fi
    while [ "$n" -gt 0 ]; do
        a=$1
        shift
        set -- "$@" "$a"
        n=$((n - 1))
    done
    # The log line leaves out the SCRAM password.
    log "runnel server $(printf '%s' "$*" | sed -e 's/password="[^"]*"/password=(hidden)/g' -e 's/password=[^],"]*/password=(hidden)/g')"
    exec runnel server "$@"
}

create_topics() {
    specs=${RUNNEL_CREATE_TOPICS:-}
    if [ -z "$specs" ]; then
        log "RUNNEL_CREATE_TOPICS is empty: nothing to create"
        return 0
    fi
    bootstrap=${RUNNEL_BOOTSTRAP_SERVERS:-localhost:9092}
    deadline=$(($(date +%s) + ${RUNNEL_CREATE_TOPICS_TIMEOUT:-120}))
    old_ifs=$IFS
    IFS=,
    # shellcheck disable=SC2086  # split on commas on purpose
    set -- $specs
    IFS=$old_ifs
    for spec in "$@"; do
        name=$(printf '%s' "$spec" | cut -d: -f1)
        partitions=$(printf '%s' "$spec" | cut -s -d: -f2)
        replicas=$(printf '%s' "$spec" | cut -s -d: -f3)
        configs=$(printf '%s' "$spec" | cut -s -d: -f4-)
        if [ -z "$name" ] || [ -z "$partitions" ] || [ -z "$replicas" ]; then
            log "bad RUNNEL_CREATE_TOPICS entry '$spec' (want NAME:PARTITIONS:REPLICAS[:K=V;K=V])"
            exit 2
        fi
        cfg_args=""
        if [ -n "$configs" ]; then
            cfg_args=$(printf '%s' "$configs" | tr ';' '\n' | sed 's/^/--config\n/')
        fi
        if [ -n "${RUNNEL_COMMAND_CONFIG:-}" ]; then
            cfg_args="--command-config
$RUNNEL_COMMAND_CONFIG${cfg_args:+
$cfg_args}"
        fi
        while :; do
            # shellcheck disable=SC2086  # one flag or value a line
            if out=$(IFS='
'
                runnel topics --bootstrap-server "$bootstrap" --create --if-not-exists \
                    --topic "$name" --partitions "$partitions" \
                    --replication-factor "$replicas" $cfg_args 2>&1); then
                log "topic $name ($partitions partitions, replication factor $replicas${configs:+, $configs}) ready"
                break
            fi
            if [ "$(date +%s)" -ge "$deadline" ]; then
                log "could not create topic $name: $out"
                exit 1
            fi
            sleep 2
        done
    done
}

case "${1:-server}" in
server)
    [ $# -gt 0 ] && shift
    server "$@"
    ;;
create-topics)
    create_topics
    ;;
health)
    # The probe checks this node by id (RUNNEL_NODE_ID, "auto" resolved).
    id=$(node_id)
    shift
    if [ -n "$id" ]; then
        RUNNEL_NODE_ID=$id exec runnel health "$@"
    fi
    unset RUNNEL_NODE_ID
    exec runnel health "$@"
    ;;
topics | configs | acls | console-producer | console-consumer | consumer-groups | bench | \
    metadata-quorum | leader-election | server-stop | storage | help | --help | -h | --version | -V)
    exec runnel "$@"
    ;;
*)
    exec "$@"
    ;;
esac
