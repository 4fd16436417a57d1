#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what it needs, format and lint checks, then
# every test (unit, integration, differential against the reference oracles).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=env.sh
source "$here/env.sh"
cd "$root"

"$here/setup.sh"
"$here/fetch-models.sh"
# Gemma 3 270M is not a default model; tests/it/gemma.rs and benches/gemma.rs use it.
"$here/fetch-models.sh" gemma3-270m
# Real PostgreSQL/Redis for the store and rate-limit tests (exports DATABASE_URL_TEST, REDIS_URL_TEST).
# shellcheck source=services.sh
source "$here/services.sh"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The dense + hybrid retrieval eval reads chunk vectors from an index kept outside the clone;
# `starpillar index` is idempotent, so it embeds only what changed (everything when the corpus
# is new to it or the model changed: ~3,300 chunks, the cold cost in the README) and is a
# few seconds' no-op otherwise.
export STARPILLAR_EVAL_STORE="${STARPILLAR_EVAL_STORE:-edge://$STARPILLAR_CACHE/eval-index}"
export STARPILLAR_EVAL_DENSE="${STARPILLAR_EVAL_DENSE:-1}"
echo "==> starpillar index corpus --store $STARPILLAR_EVAL_STORE"
cargo run --quiet --locked --bin starpillar -- index corpus --store "$STARPILLAR_EVAL_STORE" \
    --manifest "$STARPILLAR_CACHE/eval-index.manifest.json"
echo "==> cargo test"
cargo test --all-targets --locked
# A short fuzz run of every parser target (cold: builds cargo-fuzz and the small fuzz crate).
echo "==> fuzz (${STARPILLAR_FUZZ_SECS:-30} s per target, two at a time)"
FUZZ_JOBS=2 "$here/fuzz.sh" "${STARPILLAR_FUZZ_SECS:-30}"
