#!/usr/bin/env bash
# The test command. Run from anywhere on a fresh machine:  bash scripts/test.sh
# Installs the client test dependencies, then: rustfmt check, clippy (warnings are errors),
# builds the binaries and the fuzz target, runs librdkafka's test suite against a three-node
# cluster, and runs every test (nextest, else cargo test).
# Exits non-zero if any step fails; every step still runs where it can, so one run reports all.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
step() {
    local name=$1
    shift
    local t0=$SECONDS
    echo "==> $name" >&2
    if "$@"; then
        echo "==> $name: ok ($((SECONDS - t0))s)" >&2
    else
        echo "==> $name: FAILED ($((SECONDS - t0))s)" >&2
        failed+=("$name")
    fi
}

# Without the clients the compat tests cannot run at all: stop here if this fails.
step "install test deps" bash scripts/install-test-deps.sh
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: installing test dependencies failed" >&2
    exit 1
fi

step "cargo fmt" cargo fmt --all -- --check
step "crate layering" bash scripts/check-deps.sh
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo build" cargo build --workspace --bins
# librdkafka's own integration tests (the allowlist in tests/librdkafka/) against fresh three-node
# clusters of the debug binary just built. The first run builds librdkafka's test runner from
# Debian's source package (cached in ~/.cache/runnel/librdkafka).
step "librdkafka suite" bash tests/librdkafka/run.sh
# The three-node docker-compose scenario: builds a base image offline (debootstrap),
# packages the debug binary just built, kills a leader under load. Tears down even on failure.
step "compose scenario" bash scripts/compose-test.sh
# The fuzz target is built as a plain binary on stable (libfuzzer-sys links libFuzzer's main);
# running it for real is `cargo +nightly fuzz run decode_request` (see fuzz/README.md).
# Built in the main target directory (same dev profile), so shared dependencies are reused.
export FUZZ_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
fuzz_cargo() { CARGO_TARGET_DIR="$FUZZ_TARGET_DIR" cargo "$@"; }
step "cargo build fuzz" fuzz_cargo build --manifest-path fuzz/Cargo.toml
fuzz_fmt() { cargo fmt --manifest-path fuzz/Cargo.toml -- --check; }
step "cargo fmt fuzz" fuzz_fmt
# Smoke run: without coverage instrumentation libFuzzer only mutates blindly, so this proves the
# target runs and survives random frames, not much more (real fuzzing: fuzz/README.md).
fuzz_smoke() {
    local bin dir
    bin="$FUZZ_TARGET_DIR/debug/decode_request"
    dir=$(mktemp -d)
    "$bin" -runs=100000 -max_len=512 -seed=1 -rss_limit_mb=1024 "$dir" 2>&1 | tail -n 2
    local rc=${PIPESTATUS[0]}
    rm -rf "$dir"
    return "$rc"
}
step "fuzz smoke" fuzz_smoke

if cargo nextest --version >/dev/null 2>&1; then
    step "tests (nextest)" cargo nextest run --workspace --no-fail-fast
else
    step "tests (cargo test)" cargo test --workspace --no-fail-fast
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all steps passed" >&2
