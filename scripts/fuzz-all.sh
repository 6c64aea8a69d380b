#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a given time and print how many
# executions each ran.
#
#   scripts/fuzz-all.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; 0 only builds (optimised); build only
# builds in the dev profile (what CI runs); check only type-checks. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); uses RUSTC_BOOTSTRAP=1 when no nightly
# toolchain is the default. Corpora grow in fuzz/corpus/<target>/ (seeded
# from fuzz/seeds/ and tests/fixtures/); a crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1. Copy such an input
# into fuzz/regressions/<target>/ (tests/it/fuzz_seeds.rs runs it) and fix it.
# Run it niced on a shared machine: `nice -n 19 scripts/fuzz-all.sh 600`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
# Without sanitizers: the parsers are safe Rust, and libFuzzer still finds
# every panic; debug assertions (-a) turn integer overflow into one.
build_flags=(-s none -a)
# "check" only type-checks every target; "build" compiles and links every
# target in the dev profile (what CI runs: the targets cannot rot, and a cold
# dev build takes about 4.5 min on 2 cores against an hour for an optimised
# one); 0 builds them optimised without running.
if [ "$secs" = check ]; then
  exec cargo fuzz check "${build_flags[@]}" --fuzz-dir fuzz
fi
if [ "$secs" = build ]; then
  exec cargo fuzz build "${build_flags[@]}" --dev --fuzz-dir fuzz
fi
# FUZZ_DEV=1 runs the dev-profile binaries ("build" above) instead of
# optimised ones: fewer executions a second, no hour-long build.
profile=release
if [ "${FUZZ_DEV:-0}" = 1 ]; then
  build_flags+=(--dev)
  profile=debug
fi
cargo fuzz build "${build_flags[@]}" --fuzz-dir fuzz
[ "$secs" = 0 ] && exit 0
bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/$profile"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

fixtures_for() {
  local f=tests/fixtures
  case "$1" in
    dotenv) echo "$f/dotenv/.env" ;;
    modelforge_config) echo "$f/modelforge/config.json" ;;
    prompttrain_account) ls "$f"/prompttrain/credentials/accounts/*.json ;;
    prompttrain_client_keys) ls "$f"/prompttrain/credentials/train-client-keys/*.json ;;
    laravel_app_key) echo "$f/fragments/APP_KEY" ;;
    key_file) echo "$f/fragments/APP_KEY"; echo "$f/prompttrain-db/CREDENTIAL_ENCRYPTION_KEY" ;;
    envelope_body) echo "$f/expected.json" ;;
  esac
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/credshift-fuzz.XXXXXX")
[ -d /dev/shm ] && [ -w /dev/shm ] && { rmdir "$scratch"; scratch=$(mktemp -d /dev/shm/credshift-fuzz.XXXXXX); }
trap 'rm -rf "$scratch"' EXIT
export CREDSHIFT_FUZZ_DIR="$scratch"

status=0
total=0
printf '%-26s %14s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  while read -r f; do
    [ -n "$f" ] && cp -n "$f" "$corpus/fixture-$(basename "$f")" 2>/dev/null || true
  done < <(fixtures_for "$t")
  log="$scratch/$t.log"
  # The binaries built above, run directly (no rebuild between targets).
  if "$bin_dir/$t" "$corpus" \
      -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    result="no crash"
  else
    result="CRASH (see fuzz/artifacts/$t/)"
    status=1
    tail -40 "$log" >&2
  fi
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
  execs=${execs:-0}
  total=$((total + execs))
  printf '%-26s %14s %10s  %s\n' "$t" "$execs" "${rate:-0}" "$result"
done
printf '%-26s %14s\n' total "$total"
exit $status
