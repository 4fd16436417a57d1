#!/usr/bin/env bash
# Load campaign: wrk against a release `starpillar serve` on loopback, for chart-only saju,
# chart-only astrology, a cached reading, a composed reading (uncached: a new question each
# request), a generated reading and checkout (against a local Stripe stand-in), at 1/8/32/128
# concurrent clients; then two overload rows: the default rate limits (429 + Retry-After) and
# --max-concurrency 16 at 256 clients (503 + Retry-After). Writes target/load/results.md (a
# Markdown table: throughput, p50/p95/p99, error rate, status codes, peak RSS, SLO verdict).
#     scripts/load.sh                  # LOAD_DURATION=10 s per cell, LOAD_LEVELS="1 8 32 128"
# Not part of CI. For the measured rows the limiter is raised out of the way with
# --rate-limits ai=…,account=…,default=… and --plan-quotas anonymous=…,free=…,pro=… (so the
# server is measured, not the limiter). STARPILLAR_BIN=path skips the release build;
# LOAD_SCENARIOS picks rows; LOAD_OUT the output folder. Runs of load.sh and soak.sh must not
# overlap (they share the vector index under $STARPILLAR_CACHE/load).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
root="$(dirname "$here")"

dur="${LOAD_DURATION:-10}"
levels="${LOAD_LEVELS:-1 8 32 128}"
scenarios="${LOAD_SCENARIOS:-saju astrology cached composed generated checkout}"
out="${LOAD_OUT:-$root/target/load}"
mkdir -p "$out"
secret="load-test-nextauth-secret-0123456789abcdef"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends wrk; }
bin="${STARPILLAR_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked --bin starpillar)
  bin="$CARGO_TARGET_DIR/release/starpillar"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The Stripe stand-in: POST /v1/checkout/sessions answers a test-mode session.
stripe_port="$(free_port)"
python3 - "$stripe_port" >"$out/stripe.log" 2>&1 <<'EOF' &
import itertools, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ids = itertools.count(1)
class Stripe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        n = next(ids)
        body = json.dumps({"id": f"cs_test_load{n}", "object": "checkout.session",
                           "livemode": False, "url": f"https://checkout.stripe.test/{n}"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 512
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Stripe).serve_forever()
EOF
stripe=$!

pid=""
data=""
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  [ -n "$data" ] && rm -rf "$data"
  pid=""
  data=""
}
trap 'stop_server; kill $stripe 2>/dev/null || true' EXIT

index="$STARPILLAR_CACHE/load/index/edge"
mkdir -p "$index"
# start_server NAME EXTRA_ARGS…: a fresh data dir, the shared index, Stripe test mode.
start_server() {
  local name="$1"
  shift
  port="$(free_port)"
  base="http://127.0.0.1:$port"
  data="$(mktemp -d /tmp/starpillar-load.XXXXXX)"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --corpus-dir "$root/corpus" \
    --store "edge://$index" --request-timeout-secs 20 --nextauth-secret "$secret" \
    --stripe-secret-key sk_test_load --stripe-api-base "http://127.0.0.1:$stripe_port" \
    --stripe-price pro=price_load --checkout-success-url https://example.com/ok \
    --checkout-cancel-url https://example.com/cancel "$@" >"$out/server-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1800); do
    body="$(curl -s "$base/readyz" || true)"
    if [[ "$body" == *'"ready":true'* && "$body" == *"hybrid search"* ]]; then return; fi
    kill -0 "$pid" 2>/dev/null || { echo "server $name died: see $out/server-$name.log"; exit 1; }
    sleep 1
  done
  echo "server $name not ready (index still building?)"
  exit 1
}

# A session token for checkout (NextAuth v4, one hour), minted by the real next-auth.
token=""
node_path="$STARPILLAR_CACHE/node/node_modules"
if command -v node >/dev/null && [ -d "$node_path/next-auth" ]; then
  now=$(date +%s)
  token="$(NODE_PATH="$node_path" node "$here/oracles/node/mint_session.cjs" <<EOF | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"][0])'
{"cases":[{"lib":"v4","secret":"$secret","maxAge":7200,
  "token":{"sub":"load-user","name":"load test","iat":$now,"exp":$((now + 7200)),"jti":"load-$now"}}]}
EOF
)"
fi
export STARPILLAR_LOAD_TOKEN="$token" STARPILLAR_LOAD_PRICE=price_load

raw="$out/raw.txt"
: >"$raw"
{
  echo "| scenario | clients | req/s | p50 ms | p95 ms | p99 ms | errors | status codes | missing Retry-After | peak RSS MiB | SLO (P95 < 800 ms) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$out/results.md"

# cell NAME KIND CLIENTS SECONDS: one wrk run, one table row.
cell() {
  local name="$1" kind="$2" clients="$3" secs="$4" threads=2
  [ "$clients" -lt 2 ] && threads=1
  local line
  line="$(wrk -t"$threads" -c"$clients" -d"${secs}s" --timeout 30s -s "$here/load.lua" "$base" \
    -- "$kind" 2>&1 | tee -a "$raw" | grep '^RESULT' || true)"
  local hwm
  hwm=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo "?")
  if [ -z "$line" ]; then
    echo "| $name | $clients | wrk failed | | | | | | | $hwm | |" >>"$out/results.md"
    return
  fi
  declare -A f=()
  local kv
  for kv in ${line#RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  local socket=$(( f[connect] + f[read] + f[write] + f[timeout] ))
  local fives
  fives=$(tr ',' '\n' <<<"${f[codes]}" | awk -F= '$1 >= 500 && $1 != 503 {s += $2} END {print s + 0}')
  local slo="—"
  case "$kind" in saju|astrology|checkout)
    slo=$(awk -v p="${f[p95_us]}" 'BEGIN {print (p < 800000) ? "meets" : "misses"}') ;;
  esac
  awk -v n="$name" -v c="$clients" -v r="${f[requests]}" -v d="${f[duration_us]}" \
    -v a="${f[p50_us]}" -v b="${f[p95_us]}" -v p="${f[p99_us]}" -v s="$socket" -v x="$fives" \
    -v k="${f[codes]}" -v m="${f[retry_missing]}" -v h="$hwm" -v slo="$slo" 'BEGIN {
      gsub(",", " ", k)
      printf "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f %% (%d other 5xx, %d socket) | %s | %d | %s | %s |\n",
        n, c, d ? r / (d / 1e6) : 0, a / 1e3, b / 1e3, p / 1e3, r ? 100 * (x + s) / r : 0, x, s, k, m, h, slo
    }' >>"$out/results.md"
  echo "$name c=$clients: $line"
}

# Let the engine queues drain after a cell (up to 60 s), so a row does not pay for the last.
settle() {
  for _ in $(seq 1 60); do
    curl -s "$base/metrics" | awk '/^starpillar_queue_depth/ {s += $2} END {exit s > 0}' && return
    sleep 1
  done
}

raised=(--rate-limits ai=1000000000/1,account=1000000000/1,default=1000000000/1
  --plan-quotas anonymous=1000000000,free=1000000000,pro=1000000000)
start_server measured "${raised[@]}"
curl -s -o /dev/null -H 'content-type: application/json' -d '{"birth":{"date":"1990-05-15","time":"14:30","calendar":"solar","timezone":"Asia/Seoul","longitude":126.978},"sex":"female","reading":true,"locale":"en","mode":"compose","question":"How does this year look for work?"}' "$base/api/saju"
for kind in $scenarios; do
  if [ "$kind" = checkout ] && [ -z "$token" ]; then
    echo "| checkout | — | skipped: no node/next-auth to mint a session (run scripts/setup.sh) | | | | | | | | |" >>"$out/results.md"
    continue
  fi
  settle
  secs="$dur"
  [ "$kind" = generated ] && secs=$(( dur < 20 ? 20 : dur ))
  for c in $levels; do
    cell "$kind" "$kind" "$c" "$secs"
    settle
  done
done
stop_server

# Overload rows: the default limits (ai=30/60 per IP) → 429s; a small --max-concurrency → 503s.
start_server limited --max-concurrency 16
cell "saju, default rate limits (ai=30/60)" saju 32 "$dur"
stop_server
start_server shed "${raised[@]}" --max-concurrency 16
cell "composed, --max-concurrency 16" composed 256 "$dur"
stop_server

cat "$out/results.md"
