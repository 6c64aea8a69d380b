#!/usr/bin/env bash
# `credshift rekey` benchmark (issue 25), release build, peers in the same
# run (see benches/rekey.rs): 1,000 agent-prompttrain accounts (1,500
# values) rekeyed in PostgreSQL against a Node loop of the original
# algorithm, with the share of the machine's SHA-256 limit; 100,000 items in
# an `encrypted:` file against `openssl enc -d` + `openssl enc`.
# Needs PostgreSQL's initdb/pg_ctl, node and openssl.
# Usage: scripts/bench-rekey.sh   (CREDSHIFT_BENCH_ACCOUNTS, CREDSHIFT_BENCH_ITEMS)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
echo "nproc: $(nproc); $(uname -sr); load: $(cat /proc/loadavg)"
cargo bench --bench rekey
