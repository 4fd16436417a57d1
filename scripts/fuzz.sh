#!/usr/bin/env bash
# Fuzz the input parsers (fuzz/fuzz_targets/*) with cargo-fuzz / libFuzzer:
#   scripts/fuzz.sh [SECONDS] [TARGET…]     (default: 20 s each, every target)
# Installs cargo-fuzz into $STARPILLAR_CACHE/tools when missing (needs the nightly toolchain),
# builds the fuzz crate in its own target dir under $STARPILLAR_CACHE (warm across clones),
# then runs each target from its seeds (fuzz/corpus/<target>) and past crashes
# (fuzz/regressions/<target>), both read-only; what libFuzzer finds goes to
# $STARPILLAR_CACHE/fuzz-corpus/<target>, kept between runs. Exits non-zero on a crash,
# timeout or leak, printing the reproducer's path (under fuzz/artifacts/<target>/).
#   FUZZ_SANITIZER=address  run under ASan (default none: the fuzzed code is safe Rust;
#                           debug assertions and overflow checks are always on)
#   FUZZ_JOBS=N             run N targets at a time (default 1)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=env.sh
source "$here/env.sh"
cd "$root"

secs="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(chart_input session_token stripe_signature corpus_chunker)
sanitizer="${FUZZ_SANITIZER:-none}"
tools="$STARPILLAR_CACHE/tools"
fuzz_target_dir="$STARPILLAR_CACHE/fuzz-target"
work="$STARPILLAR_CACHE/fuzz-corpus"
artifacts="$root/fuzz/artifacts"
export PATH="$tools/bin:$PATH"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "==> fuzz: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "==> fuzz: installing cargo-fuzz into $tools"
  cargo +nightly install cargo-fuzz --locked --root "$tools"
fi

echo "==> fuzz: building ${targets[*]} (sanitizer: $sanitizer)"
start=$SECONDS
for t in "${targets[@]}"; do
  cargo +nightly fuzz build --sanitizer "$sanitizer" --target-dir "$fuzz_target_dir" "$t"
done
echo "==> fuzz: built in $((SECONDS - start)) s"

run_one() {
  local t="$1" log="$fuzz_target_dir/fuzz-$1.log"
  mkdir -p "$work/$t" "$artifacts/$t"
  local dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  # Past crashes (fuzz/regressions/<target>) are replayed first, with the seeds.
  local seeds=("fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
  # -timeout: one input slower than 10 s is a hang; -rss_limit_mb: runaway allocation.
  if cargo +nightly fuzz run --sanitizer "$sanitizer" --target-dir "$fuzz_target_dir" "$t" \
      "$work/$t" "${seeds[@]}" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/$t/" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
    local stats
    stats="$(grep -E '^#[0-9]+.*(DONE|pulse)' "$log" | tail -1 || true)"
    echo "==> fuzz: $t ok: ${stats:-no stats}"
  else
    echo "==> fuzz: $t FAILED; the end of its log ($log):"
    tail -40 "$log"
    echo "==> fuzz: reproducer(s):"
    ls -1 "$artifacts/$t/"* 2>/dev/null || true
    echo "    replay: cargo +nightly fuzz run --sanitizer $sanitizer $t <reproducer>"
    return 1
  fi
}

jobs="${FUZZ_JOBS:-1}"
status=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
