#!/usr/bin/env bash
# Build and run `starpillar serve` with the embedded defaults (0.0.0.0:8080). Extra arguments
# are passed to `serve`, e.g. `scripts/serve.sh --listen 127.0.0.1:9000`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
cd "$(dirname "$here")"
exec cargo run --release --locked --bin starpillar -- serve "$@"
