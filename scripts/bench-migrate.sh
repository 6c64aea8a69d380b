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
# - migrate --delete-source (cleanup: every verified item deleted from the
#   .env, each re-checked at both ends first): held against the plain
#   migrate of the same run, so the ratio is what cleanup adds.
#
# Prints a table: seconds, peer seconds, ratio, and microseconds per item;
# the last line compares per-item cost at the largest size with the smallest.
# A CPU-time table follows (user + system seconds of credshift and of the
# openssl peer, from GNU time): on a shared, loaded machine wall-clock
# seconds are the load's, CPU seconds still the work's.
# A second table gives each credshift run's peak RSS (GNU time's maximum
# resident set size) in MB and in bytes per item, against the targets
# (100,000 items: migrate <= 100 MB, inventory <= 64 MB, --delete-source
# <= 128 MB).
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
# Peak RSS in KB of the command, into the file named first; its CPU seconds
# (user + system) into the same name with `.cpu`.
rss() {
    local out=$1; shift
    /usr/bin/time -f '%M %U %S' -o "$out.all" "$@"
    awk '{ print $1 }' "$out.all" > "$out"
    awk '{ printf "%.3f\n", $2 + $3 }' "$out.all" > "$out.cpu"
}
mem_rows=()
cpu_rows=()
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

echo "load average at the start: $(cat /proc/loadavg)"
echo "nproc: $(nproc); $(uname -sr)"
printf '%8s %10s %10s %7s %9s | %10s %9s %7s %9s | %10s %7s %9s\n' \
    items migrate_s peer_s ratio us/item inventory_s peer_s ratio us/item \
    delete_s ratio us/item
first_m='' first_i='' first_d=''
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
    rss "$work/rss-p" openssl enc -aes-256-ctr -pbkdf2 -iter 600000 -salt \
        -pass env:CREDSHIFT_PASSPHRASE -in "$env_file" -out "$work/peer-$n.bin"
    sync "$work/peer-$n.bin"
    t1=$(now)
    rss "$work/rss-m" "$bin" migrate --from "dotenv:$env_file" --to "encrypted:$work/out-$n.enc" \
        --yes --json > "$work/migrate-$n.json"
    t2=$(now)
    grep -q "\"verified\": *$n" "$work/migrate-$n.json" || {
        echo "migrate of $n items did not verify all of them:" >&2
        head -c 2000 "$work/migrate-$n.json" >&2
        exit 1
    }
    t3=$(now)
    wc -l "$env_file" > /dev/null
    t4=$(now)
    rss "$work/rss-i" "$bin" inventory --from "dotenv:$env_file" --json > "$work/inventory-$n.json"
    t5=$(now)
    cp -p "$env_file" "$work/del-$n.env"
    sync
    t6=$(now)
    rss "$work/rss-d" "$bin" migrate --from "dotenv:$work/del-$n.env" \
        --to "encrypted:$work/del-$n.enc" --yes --delete-source --json > "$work/delete-$n.json"
    t7=$(now)
    grep -q "\"source_deleted\": *$n" "$work/delete-$n.json" || {
        echo "migrate --delete-source of $n items did not delete all of them:" >&2
        head -c 2000 "$work/delete-$n.json" >&2
        exit 1
    }

    m=$(secs "$t1" "$t2") mp=$(secs "$t0" "$t1") inv=$(secs "$t4" "$t5") ip=$(secs "$t3" "$t4")
    mu=$(awk -v s="$m" -v n="$n" 'BEGIN { printf "%.1f", s * 1e6 / n }')
    iu=$(awk -v s="$inv" -v n="$n" 'BEGIN { printf "%.1f", s * 1e6 / n }')
    d=$(secs "$t6" "$t7")
    du=$(awk -v s="$d" -v n="$n" 'BEGIN { printf "%.1f", s * 1e6 / n }')
    printf '%8d %10s %10s %7s %9s | %10s %9s %7s %9s | %10s %7s %9s\n' "$n" "$m" "$mp" \
        "$(awk -v a="$m" -v b="$mp" 'BEGIN { printf "%.1fx", a / b }')" "$mu" \
        "$inv" "$ip" "$(awk -v a="$inv" -v b="$ip" 'BEGIN { printf "%.0fx", a / (b > 0 ? b : 1e-3) }')" "$iu" \
        "$d" "$(awk -v a="$d" -v b="$m" 'BEGIN { printf "%.1fx", a / b }')" "$du"
    mem_rows+=("$(awk -v n="$n" -v m="$(cat "$work/rss-m")" -v i="$(cat "$work/rss-i")" \
        -v d="$(cat "$work/rss-d")" 'BEGIN { printf "%8d %10.1f %9.0f | %10.1f %9.0f | %10.1f %9.0f",
        n, m / 1024, m * 1024 / n, i / 1024, i * 1024 / n, d / 1024, d * 1024 / n }')")
    cpu_rows+=("$(awk -v n="$n" -v m="$(cat "$work/rss-m.cpu")" -v p="$(cat "$work/rss-p.cpu")" \
        -v i="$(cat "$work/rss-i.cpu")" -v d="$(cat "$work/rss-d.cpu")" 'BEGIN {
        printf "%8d %10.3f %10.3f %7.1fx %9.1f | %10.3f %9.1f | %10.3f %9.1f",
        n, m, p, m / (p > 0 ? p : 1e-3), m * 1e6 / n, i, i * 1e6 / n, d, d * 1e6 / n }')")
    [ -z "$first_m" ] && first_m=$mu first_i=$iu first_d=$du
    last_m=$mu last_i=$iu last_d=$du
    rm -f "$work/out-$n.enc" "$work/peer-$n.bin" "$work/del-$n.enc" "$work/del-$n.env"
    rm -rf "$work/state"
done
echo "per item, largest vs smallest size: migrate $(awk -v a="$last_m" -v b="$first_m" 'BEGIN { printf "%.2fx", a / b }'), inventory $(awk -v a="$last_i" -v b="$first_i" 'BEGIN { printf "%.2fx", a / b }'), migrate --delete-source $(awk -v a="$last_d" -v b="$first_d" 'BEGIN { printf "%.2fx", a / b }')"
echo "peak RSS (targets at 100,000 items: migrate <= 100 MB, inventory <= 64 MB, --delete-source <= 128 MB)"
printf '%8s %10s %9s | %10s %9s | %10s %9s\n' items migrate_MB B/item inventory_MB B/item \
    delete_MB B/item
printf '%s\n' "${mem_rows[@]}"
echo "CPU seconds (user + system; the peer is the same openssl enc)"
printf '%8s %10s %10s %8s %9s | %10s %9s | %10s %9s\n' items migrate_cpu peer_cpu ratio us/item \
    inventory_cpu us/item delete_cpu us/item
printf '%s\n' "${cpu_rows[@]}"
echo "load average at the end: $(cat /proc/loadavg)"
