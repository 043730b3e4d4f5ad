#!/usr/bin/env bash
# Fuzzing of the token verifier, the request parsers, the router and the passkey credential parsers (the code in fuzz/targets,
# a member of the main workspace; the cargo-fuzz crate in fuzz/ wraps it for libFuzzer).
#
#   scripts/fuzz.sh smoke            Stable toolchain, no nightly features: replays every file of
#                                    fuzz/corpus/<target> and then a fixed number of seeded random
#                                    mutations through the same target code
#                                    (fuzz/targets/tests/smoke.rs), on the main workspace's build.
#                                    Bounded (a few seconds once built). `cargo test --workspace`
#                                    (so `make test`) runs the same harness.
#   scripts/fuzz.sh long [SECONDS]   Coverage-guided libFuzzer: `cargo fuzz build` (stable toolchain
#                                    with RUSTC_BOOTSTRAP=1, AddressSanitizer; cargo-fuzz is
#                                    installed if missing), then each target for SECONDS (default
#                                    300). New inputs that add coverage are merged into
#                                    fuzz/corpus/<target>; a crashing input is copied there too (so
#                                    `smoke` replays it from then on) and the run exits non-zero. If
#                                    cargo fuzz cannot build here, the stable harness runs for
#                                    SECONDS per target instead.
#
# Environment: FUZZ_TARGETS (default "jwt_verify parsers router webauthn"; long only), FUZZ_SEED and
# FUZZ_ITERATIONS (smoke), FUZZ_ENGINE=stable (long: skip cargo fuzz), FUZZ_SANITIZER
# (long: address by default, `none` for plain coverage), CARGO_BUILD_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-"jwt_verify parsers router webauthn"}
LIBFUZZER_TARGET_DIR=target/fuzz-libfuzzer

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 2
}

stable_harness() {
  # The main workspace's features, so that the build is the one `make test` already made.
  cargo test -p auth-service-fuzz --features auth-service/test-hooks --test smoke -- --test-threads=2 --nocapture
}

smoke() {
  local start=$SECONDS
  stable_harness
  echo "fuzz smoke: done in $((SECONDS - start))s"
}

cargo_fuzz() {
  RUSTC_BOOTSTRAP=1 cargo fuzz "$@"
}

long() {
  local seconds=${1:-300}
  [[ $seconds =~ ^[0-9]+$ ]] || usage
  if [ "${FUZZ_ENGINE:-libfuzzer}" = stable ]; then
    long_stable "$seconds"
    return
  fi
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked -j "$CARGO_BUILD_JOBS"
  fi
  local sanitizer=${FUZZ_SANITIZER:-address}
  if ! cargo_fuzz build --sanitizer "$sanitizer" --target-dir "$LIBFUZZER_TARGET_DIR"; then
    if [ "$sanitizer" != none ] && cargo_fuzz build --sanitizer none --target-dir "$LIBFUZZER_TARGET_DIR"; then
      echo "fuzz: the $sanitizer sanitizer does not build here; fuzzing without a sanitizer" >&2
      sanitizer=none
    else
      echo "fuzz: cargo fuzz cannot build on this toolchain; running the stable harness instead" >&2
      long_stable "$seconds"
      return
    fi
  fi

  # Run the binaries just built (not `cargo fuzz run`, which would rebuild whenever the sources
  # change under a long run).
  local bin_dir
  bin_dir="$LIBFUZZER_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
  local failed=()
  for target in $TARGETS; do
    local fresh="target/fuzz-new/$target" artifacts="fuzz/artifacts/$target"
    rm -rf "$fresh"
    mkdir -p "$fresh" "$artifacts"
    local before
    before=$(find "fuzz/corpus/$target" -type f | wc -l)
    echo "fuzz: $target for ${seconds}s (libFuzzer, sanitizer $sanitizer)"
    # New inputs go to the scratch directory (the first one); the committed corpus seeds the run.
    # (libFuzzer's progress lines are left out; its stats and any finding are printed.)
    local rc
    set +e
    "$bin_dir/$target" -artifact_prefix="$artifacts/" -max_total_time="$seconds" -max_len=4096 \
      -timeout=10 -rss_limit_mb=4096 -dict="fuzz/dict/$target.dict" -print_final_stats=1 \
      "$fresh" "fuzz/corpus/$target" 2>&1 | grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)'
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
      failed+=("$target")
      for crash in "$artifacts"/crash-*; do
        [ -e "$crash" ] || continue
        local sum
        sum=$(sha1sum <"$crash" | cut -d' ' -f1)
        if find "fuzz/corpus/$target" -type f -exec sha1sum {} + | grep "^$sum " >/dev/null; then
          echo "fuzz: $target crashed on $crash (already in fuzz/corpus/$target)" >&2
        else
          cp "$crash" "fuzz/corpus/$target/$(basename "$crash")"
          echo "fuzz: $target crashed on $crash (copied into fuzz/corpus/$target)" >&2
        fi
      done
    fi
    # Keep only the new inputs that add edge coverage to the committed corpus (existing files stay).
    "$bin_dir/$target" -merge=1 -use_counters=0 -artifact_prefix="$artifacts/" -max_len=4096 -timeout=10 \
      -rss_limit_mb=4096 "fuzz/corpus/$target" "$fresh" >"target/fuzz-new/$target.merge.log" 2>&1 ||
      echo "fuzz: merging new $target inputs failed; see target/fuzz-new/$target.merge.log" >&2
    rm -rf "$fresh"
    echo "fuzz: $target corpus $before -> $(find "fuzz/corpus/$target" -type f | wc -l) files"
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in: ${failed[*]} (inputs in fuzz/artifacts/; crashes also in fuzz/corpus/)" >&2
    return 1
  fi
  echo "fuzz: no finding in $TARGETS"
}

long_stable() {
  echo "fuzz: stable harness, ${1}s per target"
  FUZZ_SECONDS=$1 stable_harness
}

case "${1:-}" in
  smoke) smoke ;;
  long) long "${2:-300}" ;;
  *) usage ;;
esac
