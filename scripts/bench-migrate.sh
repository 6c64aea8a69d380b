#!/usr/bin/env bash
# End-to-end benchmark of the release binary: `credshift migrate --from
# dotenv:F --to encrypted:G --yes` (plan, backup, batches with read-back,
# journal) and `credshift inventory --from dotenv:F --json`, for .env files of
# 1,000 / 10,000 / 20,000 / 100,000 items (override with BENCH_SIZES="1000
# 5000"), each held against a peer measured in the same run:
#
# - migrate: `openssl enc -aes-256-ctr -pbkdf2 -iter 600000` of the same .env
#   into a new file, then `sync` of it: one passphrase-derived key, one
#   encryption of every byte, one file written and flushed -- the least any
#   passphrase-encrypted copy of the file costs (it reads nothing back and
#   keeps no journal or backup).
# - inventory: `wc -l` of the same file (one read and a pass over the bytes).
#
# Prints a table: seconds, peer seconds, ratio, and microseconds per item;
# the last line compares per-item cost at the largest size with the smallest.
# Usage: scripts/bench-migrate.sh [path/to/credshift]   (default: builds
# target/release/credshift with `cargo build --release`).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
if [ -z "$bin" ]; then
    (cd "$here" && cargo build --release --quiet --bin credshift)
    bin=$here/target/release/credshift
fi
sizes=${BENCH_SIZES:-"1000 10000 20000 100000"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"

export CREDSHIFT_PASSPHRASE='bench passphrase, not a secret'
export CREDSHIFT_STATE_DIR=$work/state

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

echo "load average at the start: $(cat /proc/loadavg)"
echo "nproc: $(nproc); $(uname -sr)"
printf '%8s %10s %10s %7s %9s | %10s %9s %7s %9s\n' \
    items migrate_s peer_s ratio us/item inventory_s peer_s ratio us/item
first_m='' first_i=''
for n in $sizes; do
    env_file=$work/in-$n.env
    awk -v n="$n" 'BEGIN {
        x = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        for (i = 0; i < n; i++) printf "KEY_%08d=sk-ant-api03-%08d-%s\n", i, i, x
    }' > "$env_file"
    chmod 600 "$env_file"
    sync

    # Peer first, then credshift, each on a fresh output file.
    t0=$(now)
    openssl enc -aes-256-ctr -pbkdf2 -iter 600000 -salt -pass env:CREDSHIFT_PASSPHRASE \
        -in "$env_file" -out "$work/peer-$n.bin"
    sync "$work/peer-$n.bin"
    t1=$(now)
    "$bin" migrate --from "dotenv:$env_file" --to "encrypted:$work/out-$n.enc" --yes --json \
        > "$work/migrate-$n.json"
    t2=$(now)
    grep -q "\"verified\": *$n" "$work/migrate-$n.json" || {
        echo "migrate of $n items did not verify all of them:" >&2
        head -c 2000 "$work/migrate-$n.json" >&2
        exit 1
    }
    t3=$(now)
    wc -l "$env_file" > /dev/null
    t4=$(now)
    "$bin" inventory --from "dotenv:$env_file" --json > "$work/inventory-$n.json"
    t5=$(now)

    m=$(secs "$t1" "$t2") mp=$(secs "$t0" "$t1") inv=$(secs "$t4" "$t5") ip=$(secs "$t3" "$t4")
    mu=$(awk -v s="$m" -v n="$n" 'BEGIN { printf "%.1f", s * 1e6 / n }')
    iu=$(awk -v s="$inv" -v n="$n" 'BEGIN { printf "%.1f", s * 1e6 / n }')
    printf '%8d %10s %10s %7s %9s | %10s %9s %7s %9s\n' "$n" "$m" "$mp" \
        "$(awk -v a="$m" -v b="$mp" 'BEGIN { printf "%.1fx", a / b }')" "$mu" \
        "$inv" "$ip" "$(awk -v a="$inv" -v b="$ip" 'BEGIN { printf "%.0fx", a / (b > 0 ? b : 1e-3) }')" "$iu"
    [ -z "$first_m" ] && first_m=$mu first_i=$iu
    last_m=$mu last_i=$iu
    rm -f "$work/out-$n.enc" "$work/peer-$n.bin"
    rm -rf "$work/state"
done
echo "per item, largest vs smallest size: migrate $(awk -v a="$last_m" -v b="$first_m" 'BEGIN { printf "%.2fx", a / b }'), inventory $(awk -v a="$last_i" -v b="$first_i" 'BEGIN { printf "%.2fx", a / b }')"
echo "load average at the end: $(cat /proc/loadavg)"
