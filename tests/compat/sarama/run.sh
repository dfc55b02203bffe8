#!/usr/bin/env bash
# Builds and runs the sarama compat program: run.sh BOOTSTRAP TOPIC
#
# sarama 1.22 comes from Debian (golang-github-shopify-sarama-dev, sources under
# /usr/share/gocode) and there is no Go module proxy, so this builds in GOPATH mode
# (GO111MODULE=off) with GOPATH=/usr/share/gocode, offline. Its zstd codec (DataDog/zstd) is cgo
# against the system libzstd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${SARAMA_BIN_DIR:-${TMPDIR:-/tmp}/runnel-compat-sarama}
mkdir -p "$out"
export GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$out/gocache"
export CGO_CFLAGS="-O2 -Wno-deprecated-declarations"
go build -o "$out/sarama-roundtrip" "$here/main.go"
exec "$out/sarama-roundtrip" "$@"
