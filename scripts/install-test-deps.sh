#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, and nothing that is already there.
# The same clients serve tests/compat (t10), tests/failover (t61) and tests/groups (t71).
# Idempotent: a second run installs nothing. Quiet unless something fails; any failure aborts.
#   apt:  kcat, golang-go + golang-github-shopify-sarama-dev (sarama 1.22 builds offline from
#         /usr/share/gocode), nodejs (only if `node` is missing), openssl (scripts/dev-certs.sh
#         and the TLS checks of the security tests), libssl-dev + pkg-config (the rdkafka
#         dev-dependency's `ssl` feature links the system OpenSSL through openssl-sys)
#   pip:  the three Python Kafka clients at pinned versions, plus the codec libraries
#         kafka-python and aiokafka need for snappy/lz4/zstd
#   npm:  kafkajs 2.2.4 from ../shared/clients (offline) into tests/compat/kafkajs/node_modules
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { echo "install-test-deps: $*" >&2; }

# ---- apt ---------------------------------------------------------------------------------------
apt_missing=()
command -v kcat >/dev/null 2>&1 || apt_missing+=(kcat)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
command -v go >/dev/null 2>&1 || apt_missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Shopify/sarama ] || apt_missing+=(golang-github-shopify-sarama-dev)
# Our image ships node (with npm) outside apt: only when node is missing take Debian's.
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs npm)
command -v pkg-config >/dev/null 2>&1 || apt_missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || apt_missing+=(libssl-dev)
if [ ${#apt_missing[@]} -gt 0 ]; then
    log "apt-get install ${apt_missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# ---- pip ---------------------------------------------------------------------------------------
py=${PYTHON:-python3}
pip_want=(
    confluent-kafka==2.16.1
    kafka-python==3.0.12
    aiokafka==0.14.0
    cramjam==2.14.0       # aiokafka's snappy, lz4 and zstd
    lz4==4.4.5            # kafka-python's lz4
    python-snappy==0.7.3  # kafka-python's snappy
    zstandard==0.25.0     # kafka-python's zstd
)
# One interpreter start checks every pin (pip show per package is slow).
mapfile -t pip_missing < <("$py" - "${pip_want[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(spec)
PY
)
if [ ${#pip_missing[@]} -gt 0 ]; then
    log "pip install ${pip_missing[*]}"
    # Debian's system python refuses global installs without this (PEP 668).
    PIP_BREAK_SYSTEM_PACKAGES=1 "$py" -m pip install -q --disable-pip-version-check \
        --root-user-action=ignore "${pip_missing[@]}"
fi

# ---- npm (offline) -----------------------------------------------------------------------------
kjs_dir="$root/tests/compat/kafkajs"
kjs_tgz="$root/../shared/clients/kafkajs-2.2.4.tgz"
have_kjs=$(node -e 'try{console.log(require(process.argv[1]+"/node_modules/kafkajs/package.json").version)}catch(e){}' "$kjs_dir" 2>/dev/null || true)
if [ "$have_kjs" != "2.2.4" ]; then
    [ -f "$kjs_tgz" ] || { log "missing $kjs_tgz"; exit 1; }
    log "npm install kafkajs 2.2.4 (offline)"
    (cd "$kjs_dir" && npm install --offline --no-audit --no-fund --no-save --loglevel=error "$kjs_tgz" >/dev/null)
fi

# ---- verify ------------------------------------------------------------------------------------
command -v kcat >/dev/null
command -v openssl >/dev/null
command -v go >/dev/null
command -v node >/dev/null
command -v npm >/dev/null || { log "node is installed but npm is not"; exit 1; }
pkg-config --exists openssl
"$py" -c 'import confluent_kafka, kafka, aiokafka, cramjam, lz4.frame, snappy, zstandard'
node -e 'require(process.argv[1]+"/node_modules/kafkajs")' "$kjs_dir"
