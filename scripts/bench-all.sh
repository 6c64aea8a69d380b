#!/usr/bin/env bash
# Every performance target of the project in one run, each next to the peer
# it is measured against in the same run and its target, as one table:
#
# - PBKDF2 (benches/kdf.rs): one 100,000-iteration derivation against
#   OpenSSL's SHA-256 compression time (`openssl speed -evp sha256`), and a
#   1,500-key batch over every core against the all-core limit;
# - agent-prompttrain (benches/prompttrain_db.rs): 1,500 values into
#   `prompttrain-db:` and out of it, end to end, against the all-core limit
#   and a Node loop of the original algorithm;
# - the Secret Service (benches/keyring.rs): 200 items end to end against
#   the floor of 200 bare CreateItem calls, on disk and on tmpfs (the
#   median of the ratios of alternating pairs after a warm-up pair);
# - `.env` (scripts/bench-migrate.sh): 100,000 items into an encrypted file,
#   per-item cost at 100k against 10k (wall clock, and CPU time, which
#   holds under load), and peak RSS of migrate, inventory and
#   --delete-source with bytes per item at 1k, 10k, 100k;
# - the wizard (scripts/bench-wizard-rss.sh, when tmux is there): peak RSS
#   at every step over a `.env` of the largest of BENCH_SIZES items
#   (BENCH_WIZARD_ITEMS overrides), driven in tmux;
# - OpenBao (scripts/bench-vault.sh, when `bao` and hvac can be had): 1,000
#   `.env` items with read-back against a `bao kv put` loop and a Python
#   hvac loop, both layouts (BENCH_VAULT_SIZES, default "100 1000").
#
# The full output of each bench is kept in $BENCH_OUT (default: a new temp
# dir) and the table is printed last, with the date, machine, load average
# and commit. Wall-clock rows mean something only on an idle machine; the
# load average is printed so a reader can tell. Needs what the benches need:
# PostgreSQL's initdb/pg_ctl and Node (prompttrain_db), gnome-keyring and
# dbus (keyring); a bench whose service is missing prints "-" in its rows.
#
# Usage: scripts/bench-all.sh   (BENCH_SKIP="keyring prompttrain" skips some;
# BENCH_REUSE=1 with BENCH_OUT=DIR prints the table of an earlier run's
# outputs without running anything)
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
skip=" ${BENCH_SKIP:-} "
cd "$here"

load_start=$(cat /proc/loadavg)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
run() {
    local name=$1; shift
    if [[ $skip == *" $name "* ]]; then
        echo "(skipped)" > "$out/$name.txt"
        return
    fi
    echo "== $name: $*" >&2
    "$@" > "$out/$name.txt" 2>&1 || echo "(exit $?)" >> "$out/$name.txt"
}

if [ -z "${BENCH_REUSE:-}" ]; then
    cargo build --release --quiet --bin credshift
    run kdf cargo bench --quiet --bench kdf
    run prompttrain cargo bench --quiet --bench prompttrain_db
    run keyring cargo bench --quiet --bench keyring
    run dotenv env BENCH_SIZES="${BENCH_SIZES:-1000 10000 100000}" \
        scripts/bench-migrate.sh "$here/target/release/credshift"
    wizard_n=${BENCH_WIZARD_ITEMS:-$(tr ' ' '\n' <<< "${BENCH_SIZES:-100000}" | sort -n | tail -1)}
    run wizard env BENCH_WIZARD_ITEMS="$wizard_n" \
        scripts/bench-wizard-rss.sh "$here/target/release/credshift"
    # shellcheck disable=SC2086
    run vault env CREDSHIFT_BIN="$here/target/release/credshift" \
        scripts/bench-vault.sh ${BENCH_VAULT_SIZES:-100 1000}
fi
for f in kdf prompttrain keyring dotenv wizard vault; do [ -f "$out/$f.txt" ] || echo "(not run)" > "$out/$f.txt"; done

# A field of the first line matching a pattern, or "-".
pick() { awk -v p="$2" -v f="$3" '$0 ~ p { print $f; found = 1; exit } END { if (!found) print "-" }' "$out/$1.txt"; }
row() { printf '%-58s %-16s %-26s %s\n' "$1" "$2" "$3" "$4"; }

kdf_one=$(sed -n 's/^one derivation: \([0-9.]*\)x.*/\1x/p' "$out/kdf.txt" | head -1)
kdf_batch=$(sed -n 's/.*wall (\([0-9.]*%\) of the.*/\1/p' "$out/kdf.txt" | head -1)
kdf_cpu=$(sed -n 's/.*CPU per key (\([0-9.]*%\) of the one-core limit).*/\1/p' "$out/kdf.txt" | head -1)
pt_in=$(pick prompttrain "^into prompttrain-db, credshift migrate" 7)
pt_in_node=$(pick prompttrain "^into prompttrain-db, credshift migrate" 6)
pt_out=$(pick prompttrain "^Node's values -> encrypted, credshift migrate" 9)
pt_out_node=$(pick prompttrain "^Node's values -> encrypted, credshift migrate" 8)
pt_in_cpu=$(pick prompttrain "^into prompttrain-db, credshift migrate" 10)
pt_out_cpu=$(pick prompttrain "^Node's values -> encrypted, credshift migrate" 12)
kr_disk=$(sed -n 's/^end to end takes \([0-9.]*x\) the floor.*/\1/p' "$out/keyring.txt" | sed -n 1p)
kr_shm=$(sed -n 's/^end to end takes \([0-9.]*x\) the floor.*/\1/p' "$out/keyring.txt" | sed -n 2p)
kr_cpu() { sed -n 's/^gnome-keyring CPU, end to end \/ floor: \([0-9.]*x\).*/\1/p' "$out/keyring.txt" | sed -n "$1p"; }
env_100k=$(awk '$1 == 100000 && NF > 10 { print $2 " s"; exit }' "$out/dotenv.txt")
# A size that was not run (BENCH_SIZES) prints "-".
env_scale=$(awk '$1 == 10000 && NF > 10 { a = $5 } $1 == 100000 && NF > 10 { b = $5 } END { if (a > 0 && b > 0) printf "%.2fx", b / a; else print "-" }' "$out/dotenv.txt")
mem() { awk -v c="$1" '$1 == 100000 && NF == 9 { v = $c " MB"; exit } END { print (v == "" ? "-" : v) }' "$out/dotenv.txt"; }
bpi() { awk -v c="$1" '$1 == n && NF == 9 { v = $c; exit } END { print (v == "" ? "-" : v) }' n="$2" "$out/dotenv.txt"; }
# The CPU-time table's rows have 11 fields (items, cpu, peer, ratio, us/item, |, ...).
cpu() { awk -v c="$1" -v n="$2" '$1 == n && NF == 11 { v = $c; exit } END { print (v == "" ? "-" : v) }' "$out/dotenv.txt"; }
env_cpu_scale=$(awk '$1 == 10000 && NF == 11 { a = $5 } $1 == 100000 && NF == 11 { b = $5 } END { if (a > 0 && b > 0) printf "%.2fx", b / a; else print "-" }' "$out/dotenv.txt")
# Vault: items/s of credshift (one-secret and item layouts) and of the two loops.
vrate() { awk -v n="$1" -v p="$2" '$1 == "n=" n && index($0, p) { for (i = 1; i <= NF; i++) if ($i == "items/s") { print $(i - 1); exit } }' "$out/vault.txt"; }
vratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", a / b; else print "-" }'; }

echo
echo "credshift bench-all: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "commit $commit; load average at the start: $load_start; at the end: $(cat /proc/loadavg)"
row "row" "measured" "peer" "target"
row "PBKDF2 100k iterations, one derivation" "${kdf_one:--}" "OpenSSL compression time" "<= 1.11x"
row "PBKDF2 1,500 keys over every core (wall)" "${kdf_batch:--}" "all-core limit" ">= 85%"
row "PBKDF2 1,500 keys over every core (CPU per key)" "${kdf_cpu:--}" "one-core limit" ">= 90%"
row "1,500 prompttrain values into prompttrain-db, end to end" "${pt_in:--} (${pt_in_node:--})" "all-core limit (Node loop)" ">= 85% (about 4.3x)"
row "1,500 prompttrain values out of prompttrain-db, end to end" "${pt_out:--} (${pt_out_node:--})" "all-core limit (Node loop)" ">= 85% (about 4.3x)"
row "the same two, CPU time against the CPU-time limit" "${pt_in_cpu:--} / ${pt_out_cpu:--}" "compression limit" "(holds under load)"
row "200 items into the Secret Service, end to end, disk" "${kr_disk:--}" "bare CreateItem floor" "<= 1.15x"
row "200 items into the Secret Service, end to end, tmpfs" "${kr_shm:--}" "bare CreateItem floor" "<= 1.15x"
row "the same, gnome-keyring CPU, disk / tmpfs" "$(kr_cpu 1 | grep . || echo -) / $(kr_cpu 2 | grep . || echo -)" "the floor's" "(holds under load)"
row ".env 100,000 items into an encrypted file" "${env_100k:--}" "(idle machine)" "<= 1.5 s"
row ".env per-item cost, 100k vs 10k" "${env_scale:--}" "10k items" "<= 1.2x"
row ".env 100,000 items, CPU seconds (and vs peer)" "$(cpu 2 100000) s ($(cpu 4 100000))" "openssl enc, CPU seconds" "(<= 1.5 s idle wall)"
row ".env per-item CPU cost, 100k vs 10k" "${env_cpu_scale:--}" "10k items" "<= 1.2x"
row "peak RSS, migrate 100k" "$(mem 2)" "" "<= 100 MB"
row "peak RSS, inventory --json 100k" "$(mem 5)" "" "<= 64 MB"
row "peak RSS, migrate --delete-source 100k" "$(mem 8)" "" "<= 128 MB"
wiz=$(sed -n 's/^wizard peak RSS: \([0-9.]*\) MB at \([0-9]*\) items.*/\1 MB|\2/p' "$out/wizard.txt" | head -1)
[ -n "$wiz" ] || wiz="-|-"
row "wizard peak RSS over every step, ${wiz#*|} items" "${wiz%|*}" "(all steps, VmHWM)" "< 150 MB at 100k"
for n in 1000 10000 100000; do
    row "bytes per item at $n: migrate / inventory / delete" \
        "$(bpi 3 $n) / $(bpi 6 $n) / $(bpi 9 $n)" "peak RSS / items" ""
done
for n in ${BENCH_VAULT_SIZES:-100 1000}; do
    cs=$(vrate "$n" "(one secret)") ci=$(vrate "$n" "?layout=item") bl=$(vrate "$n" "bao kv put") hv=$(vrate "$n" "hvac loop")
    row "OpenBao $n items/s, one secret / ?layout=item" "${cs:--} / ${ci:--}" "bao loop ${bl:--}, hvac ${hv:--}" ""
    row "  the same, against the loops" "$(vratio "$ci" "$bl") bao, $(vratio "$ci" "$hv") hvac (item)" "bao / hvac loop" ">= 20x bao, >= 3x hvac"
done
echo "full outputs: $out"
