#!/usr/bin/env bash
# Builds and runs the sarama security program: run.sh BOOTSTRAP TOPIC GROUP [KEY=VALUE...]
#
# Like tests/compat/sarama/run.sh: sarama 1.22 from Debian (/usr/share/gocode), built offline
# in GOPATH mode; see main.go for what it checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${SARAMA_BIN_DIR:-${TMPDIR:-/tmp}/runnel-security-sarama}
mkdir -p "$out"
export GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$out/gocache"
export CGO_CFLAGS="-O2 -Wno-deprecated-declarations"
go build -o "$out/sarama-security" "$here/main.go"
exec "$out/sarama-security" "$@"
