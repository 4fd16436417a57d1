#!/usr/bin/env bash
# Soak: mixed load (saju and astrology charts, cached and composed readings, embeddings) against
# a release `starpillar serve` on loopback for DURATION (seconds, or Nm / Nh; default 30m),
# sampling the server's RSS and open file descriptors every 10 s, with the error rate per minute.
#     scripts/soak.sh 30m            # writes target/soak/{resources,minutes}.csv and summary.md
# Not part of CI. Load generator: wrk (Debian; installed here if missing). The per-IP rate
# limits and the anonymous reading quota are raised (--rate-limits, --plan-quotas) so the
# server is measured, not the limiter. STARPILLAR_BIN=path skips the release build;
# SOAK_CONNECTIONS (default 8) sets the concurrent clients; SOAK_OUT the output folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
root="$(dirname "$here")"

duration="${1:-30m}"
case "$duration" in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac
conns="${SOAK_CONNECTIONS:-8}"
out="${SOAK_OUT:-$root/target/soak}"
mkdir -p "$out"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends wrk; }
bin="${STARPILLAR_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked --bin starpillar)
  bin="$CARGO_TARGET_DIR/release/starpillar"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
data="$(mktemp -d /tmp/starpillar-soak.XXXXXX)"
# The vector index persists under $STARPILLAR_CACHE/load (built by the first run, then reused:
# the indexer is idempotent); runs of load.sh and soak.sh must not overlap.
index="$STARPILLAR_CACHE/load/index/edge"
mkdir -p "$index"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --corpus-dir "$root/corpus" \
  --store "edge://$index" \
  --rate-limits ai=1000000000/1,account=1000000000/1,default=1000000000/1 \
  --plan-quotas anonymous=1000000000,free=1000000000 >"$out/server.log" 2>&1 &
pid=$!
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

# Ready, models loaded and the corpus indexed (hybrid search), so the curve shows the steady
# state, not the start-up.
for _ in $(seq 1 1800); do
  body="$(curl -s "$base/readyz" || true)"
  if [[ "$body" == *'"ready":true'* && "$body" == *"hybrid search"* ]]; then break; fi
  sleep 1
done
echo "==> soak: pid $pid on $base for ${secs}s, $conns connections"

echo "t_s,rss_kb,fds" >"$out/resources.csv"
start=$(date +%s)
(
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "$(( $(date +%s) - start )),$rss,$fds" >>"$out/resources.csv"
    sleep 10
  done
) &
sampler=$!

echo "minute,requests,non2xx,socket_errors,error_rate,p50_ms,p95_ms,p99_ms,codes" >"$out/minutes.csv"
minute=0
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
  minute=$((minute + 1))
  left=$(( secs - ($(date +%s) - start) ))
  span=$(( left < 60 ? left : 60 ))
  [ "$span" -lt 1 ] && break
  line="$(wrk -t2 -c"$conns" -d"${span}s" --timeout 30s -s "$here/load.lua" "$base" \
    -- saju astrology cached composed embed 2>&1 | grep '^RESULT' || true)"
  if [ -z "$line" ]; then
    echo "$minute,0,0,0,1,,,,wrk-failed" >>"$out/minutes.csv"
    continue
  fi
  declare -A f=()
  for kv in ${line#RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  errs=$(( f[connect] + f[read] + f[write] + f[timeout] ))
  codes="${f[codes]}"
  # Error = a 5xx or a socket error/timeout (429s would be the limiter, raised here).
  fives=$(tr ',' '\n' <<<"$codes" | awk -F= '$1 >= 500 {s += $2} END {print s + 0}')
  rate=$(awk -v e=$((fives + errs)) -v n="${f[requests]}" 'BEGIN {printf "%.5f", n ? e / n : 1}')
  awk -v m="$minute" -v n="${f[requests]}" -v x="${f[non2xx]}" -v e="$errs" -v r="$rate" \
    -v a="${f[p50_us]}" -v b="${f[p95_us]}" -v c="${f[p99_us]}" -v k="${codes//,/;}" \
    'BEGIN {printf "%d,%d,%d,%d,%s,%.1f,%.1f,%.1f,%s\n", m, n, x, e, r, a/1e3, b/1e3, c/1e3, k}' \
    >>"$out/minutes.csv"
  unset f
done
sleep 1

# The curve: first/min/max/last and the least-squares slope (per hour) of RSS and fds.
python3 - "$out" <<'EOF' | tee "$out/summary.md"
import csv, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/resources.csv")))
mins = list(csv.DictReader(open(f"{out}/minutes.csv")))
def slope(xs, ys):
    n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
    d = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / d if d else 0.0
t = [float(r["t_s"]) for r in rows]
print(f"samples: {len(rows)} over {t[-1] - t[0]:.0f} s, {len(mins)} load minutes\n")
print("| series | first | min | max | last | slope per hour | slope, 2nd half |")
print("|---|---|---|---|---|---|---|")
for key, unit, scale in (("rss_kb", "MiB", 1024.0), ("fds", "", 1.0)):
    ys = [float(r[key]) / scale for r in rows]
    h = len(ys) // 2
    s_all = slope(t, ys) * 3600
    s_half = slope(t[h:], ys[h:]) * 3600 if len(ys) - h > 2 else 0.0
    name = "RSS (MiB)" if unit else "open fds"
    print(f"| {name} | {ys[0]:.1f} | {min(ys):.1f} | {max(ys):.1f} | {ys[-1]:.1f} | "
          f"{s_all:+.1f} | {s_half:+.1f} |")
rates = [float(m["error_rate"]) for m in mins]
reqs = [int(m["requests"]) for m in mins]
if rates:
    h = len(rates) // 2
    first = sum(rates[:h]) / max(h, 1); second = sum(rates[h:]) / max(len(rates) - h, 1)
    print(f"\nrequests: {sum(reqs)} ({min(reqs)}..{max(reqs)} per minute); error rate per minute: "
          f"min {min(rates):.4%}, max {max(rates):.4%}; first half {first:.4%}, second half "
          f"{second:.4%}")
EOF
