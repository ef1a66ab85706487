#!/usr/bin/env bash
# Fuzz smoke: builds every cargo-fuzz target once, then runs each one for
# FUZZ_SECONDS (default 20) on one core, starting from its seed corpus
# (seeds/<target>) and replaying the minimized finds (artifacts-found/<target>).
# Fails when any target crashes, panics, times out or runs out of memory.
#
#   ./run-smoke.sh                     # every target, 20 s each
#   FUZZ_SECONDS=300 ./run-smoke.sh    # the long run (see README.md)
#   ./run-smoke.sh reference_parse     # some targets only
#
# FUZZ_TIMEOUT_SECONDS (default 10): an input slower than this is a failure.
# FUZZ_TARGET_DIR (default fuzz/target): where the build goes.
# FUZZ_RUN_DIR (default fuzz/): where corpus/, artifacts/ and logs/ go, so a
# long run can go on beside a smoke run without sharing them.
#
# Installs cargo-fuzz (pinned) when missing. The toolchain is stable: no
# sanitizer is used (every crate fuzzed here forbids unsafe code), so
# cargo-fuzz passes no -Z flag; RUSTC_BOOTSTRAP=1 is set anyway, for
# `--sanitizer address` by hand, and kept the same so builds stay fresh.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.1
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
# A single input taking longer than this is a failure (a hang).
FUZZ_TIMEOUT_SECONDS="${FUZZ_TIMEOUT_SECONDS:-10}"
ALL_TARGETS=(
  reference_parse
  model_document
  subject_token
  notification_envelope
  docker_config_json
  tags_list_link
)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# fuzz/target unless FUZZ_TARGET_DIR names another (e.g. one kept outside a
# fresh CI clone, so the instrumented dependencies are built only once).
TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
# The flags of README.md's reproduce and minimize commands: same build.
FLAGS=(--release --debug-assertions --sanitizer none --target-dir "$TARGET_DIR" --target "$TRIPLE")
BIN="$TARGET_DIR/$TRIPLE/release"
RUN_DIR="${FUZZ_RUN_DIR:-$PWD}"

log "building the fuzz targets ($TARGET_DIR)"
cargo fuzz build "${FLAGS[@]}"

FUZZ_DIR="$PWD"
mkdir -p "$RUN_DIR"
cd "$RUN_DIR"
mkdir -p logs
failed=()
summary=()
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  corpora=("corpus/$target")
  if [ -d "$FUZZ_DIR/seeds/$target" ]; then corpora+=("$FUZZ_DIR/seeds/$target"); fi
  if [ -d "$FUZZ_DIR/artifacts-found/$target" ]; then corpora+=("$FUZZ_DIR/artifacts-found/$target"); fi
  args=(
    "-max_total_time=$FUZZ_SECONDS"
    "-timeout=$FUZZ_TIMEOUT_SECONDS"
    -rss_limit_mb=2048
    -print_final_stats=1
    "-artifact_prefix=artifacts/$target/"
  )
  if [ -f "$FUZZ_DIR/dicts/$target.dict" ]; then args+=("-dict=$FUZZ_DIR/dicts/$target.dict"); fi
  log "fuzzing $target for ${FUZZ_SECONDS}s (log: $RUN_DIR/logs/$target.log)"
  # The binary built above, not `cargo fuzz run`, which would rebuild when a
  # source changed meanwhile. One process, one core: libFuzzer's default (no
  # -jobs, no -workers).
  if "$BIN/$target" "${args[@]}" "${corpora[@]}" >"logs/$target.log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$target")
    tail -n 60 "logs/$target.log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$target.log" | tail -n 1)
  corpus=$(find "corpus/$target" -type f | wc -l)
  summary+=("$(printf '%-22s %-6s %12s execs %8s/s  corpus %s' \
    "$target" "$result" "${execs:-?}" "${rate:-?}" "$corpus")")
done

log "fuzz summary (${FUZZ_SECONDS}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found a failure in: ${failed[*]} (inputs under $RUN_DIR/artifacts/<target>/)" >&2
  exit 1
fi
