# Sourced by the other scripts: where caches live (outside the clone, so fresh clones build warm).
# shellcheck shell=bash
export STARPILLAR_CACHE="${STARPILLAR_CACHE:-$HOME/.cache/starpillar}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STARPILLAR_CACHE/target}"
export STARPILLAR_VENV="${STARPILLAR_VENV:-$STARPILLAR_CACHE/venv}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$STARPILLAR_CACHE/pip}"
export npm_config_cache="${npm_config_cache:-$STARPILLAR_CACHE/npm}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$STARPILLAR_CACHE"
