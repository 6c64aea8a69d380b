#!/usr/bin/env bash
# Peak memory of the wizard over a large `.env`: `credshift --from dotenv:F
# --to encrypted:G` (the wizard with both stores chosen) in a private tmux
# server (as tests/support/tmux.rs drives it), walked through every step
# with the keys a person presses: target, consent, inventory, dry run,
# execute, verify, cleanup (delete the verified items, confirmed), done.
#
# At the end of each step (once the next step's screen is up) it samples
# the process's VmHWM (peak RSS so far) and VmRSS from /proc, and prints one
# row per step; the target is VmHWM < 150 MB at every step with 100,000
# items. BENCH_WIZARD_ITEMS (default 100000) sets the size; a step waits at
# most BENCH_WIZARD_TIMEOUT seconds (default 600) for its screen.
# The last line, `wizard peak RSS: N MB at N items`, is what
# scripts/bench-all.sh reads.
#
# BENCH_WIZARD_WRAP, when set, is put before the binary (a heap profiler:
# `heaptrack -o FILE` or `valgrind --tool=massif --massif-out-file=FILE`);
# the rows then sample the newest process named BENCH_WIZARD_PROC (default
# credshift) under the pane, profiler overhead included.
#
# Usage: scripts/bench-wizard-rss.sh [path/to/credshift]   (default:
# target/release/credshift, built with `cargo build --release`).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
if [ -z "$bin" ]; then
    (cd "$here" && cargo build --release --quiet --bin credshift)
    bin=$here/target/release/credshift
fi
n=${BENCH_WIZARD_ITEMS:-100000}
timeout=${BENCH_WIZARD_TIMEOUT:-600}
wrap=${BENCH_WIZARD_WRAP:-}
proc_name=${BENCH_WIZARD_PROC:-credshift}
command -v tmux > /dev/null || { echo "tmux is not installed: no wizard row" >&2; exit 1; }

work=$(mktemp -d)
chmod 700 "$work"
sock=credshift-bench-wizard-$$
cleanup() {
    tmux -L "$sock" kill-server 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

env_file=$work/in.env
awk -v n="$n" 'BEGIN {
    x = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    for (i = 0; i < n; i++) printf "KEY_%08d=sk-ant-api03-%08d-%s\n", i, i, x
}' > "$env_file"
chmod 600 "$env_file"

# The pane runs the wizard, then prints its exit code; `sleep` keeps the
# pane (and its last screen) up for the capture.
tmux -L "$sock" -f /dev/null new-session -d -x 100 -y 30 \
    -e "CREDSHIFT_STATE_DIR=$work/state" -e "TMPDIR=$work" \
    -e "CREDSHIFT_PASSPHRASE=bench passphrase, not a secret" \
    -e TERM=xterm-256color -e NO_COLOR=1 \
    "$wrap '$bin' --from 'dotenv:$env_file' --to 'encrypted:$work/out.enc'; echo WIZARD-EXIT:\$?; sleep 600"

screen() { tmux -L "$sock" capture-pane -p; }
keys() { tmux -L "$sock" send-keys "$@"; }
# The credshift process in the pane (the shell's child).
pid=''
find_pid() {
    local shell_pid
    shell_pid=$(tmux -L "$sock" list-panes -F '#{pane_pid}')
    for _ in $(seq 100); do
        if [ -z "$wrap" ]; then
            pid=$(pgrep -P "$shell_pid" -x credshift || true)
        else
            # The profiler may run the binary as a grandchild of the pane.
            pid=$(pgrep -n -x "$proc_name" || true)
        fi
        [ -n "$pid" ] && return
        sleep 0.1
    done
    echo "no $proc_name process under the pane" >&2
    screen >&2
    exit 1
}
wait_for() {
    local start=$SECONDS
    until screen | grep -qF -- "$1"; do
        if ((SECONDS - start > timeout)); then
            echo "timed out waiting for \"$1\"; the screen:" >&2
            screen >&2
            exit 1
        fi
        sleep 0.2
    done
}
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$pid/status"; }
peak=0
row() {
    local hwm rss
    hwm=$(kb VmHWM) rss=$(kb VmRSS)
    ((hwm > peak)) && peak=$hwm
    printf '%-44s %10.1f %10.1f %9.0f\n' "$1" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$hwm" -v n="$n" 'BEGIN { print k * 1024 / n }')"
}

echo "load average at the start: $(cat /proc/loadavg)"
echo "wizard over $n .env items (target: peak RSS < 150 MB at every step)"
printf '%-44s %10s %10s %9s\n' "step (sampled once the next screen is up)" VmHWM_MB VmRSS_MB B/item
wait_for "Choose the TARGET"
find_pid
row "start (assess: stores chosen)"
keys Enter
wait_for "credshift will copy"
row "consent"
keys y
# The inventory is read in the background: wait for the full count.
wait_for "$n items, $n selected"
row "inventory ($n items read)"
keys Enter
wait_for "Enter writes"
row "dry run (planned)"
keys Enter
# Verify starts on its own when the run ends: sampled as soon as its
# screen is up (the run's peak, plus the start of the read-back).
wait_for "step 6/8"
row "execute (verify screen up)"
wait_for "all match the source"
row "execute + verify (written, read back)"
keys Enter
wait_for "verified items in the source"
row "cleanup screen"
keys Space
keys Enter
wait_for "Delete"
keys y
wait_for "Migration complete"
row "cleanup done (verified items deleted)"
keys Enter
wait_for "WIZARD-EXIT"
if ! screen | grep -qF "WIZARD-EXIT:0"; then
    echo "the wizard did not exit 0:" >&2
    screen >&2
    exit 1
fi
[ -s "$env_file" ] && left=$(wc -l < "$env_file") || left=0
echo "source lines left after cleanup: $left (of $n)"
echo "load average at the end: $(cat /proc/loadavg)"
echo "wizard peak RSS: $(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }') MB at $n items"
