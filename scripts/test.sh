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
# Real PostgreSQL/Redis for the store and rate-limit tests (exports DATABASE_URL_TEST, REDIS_URL_TEST).
# shellcheck source=services.sh
source "$here/services.sh"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --all-targets --locked
