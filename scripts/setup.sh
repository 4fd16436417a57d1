#!/usr/bin/env bash
# Install everything the test suite needs, idempotently and with caching:
#   - Debian packages listed in scripts/apt-packages.txt (promtool, servers, compilers),
#   - a Python venv with the reference oracles in scripts/requirements-oracles.txt,
#   - the npm packages of scripts/oracles/node (when present).
# Safe to run again: each step is skipped when its inputs have not changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# --- Debian packages ---------------------------------------------------------------------
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' -e '/^$/d' "$here/apt-packages.txt")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "==> apt: all ${#pkgs[@]} packages present"
fi

# --- Python oracles ----------------------------------------------------------------------
req="$here/requirements-oracles.txt"
want="$(hash_of "$req")"
if ! stamp_ok "$STARPILLAR_VENV/.stamp" "$want"; then
  echo "==> python: building the oracle venv in $STARPILLAR_VENV"
  [ -x "$STARPILLAR_VENV/bin/python" ] || python3 -m venv "$STARPILLAR_VENV"
  "$STARPILLAR_VENV/bin/pip" install -q --upgrade pip wheel
  "$STARPILLAR_VENV/bin/pip" install -q -r "$req"
  echo "$want" > "$STARPILLAR_VENV/.stamp"
else
  echo "==> python: oracle venv up to date"
fi

# --- Node oracles ------------------------------------------------------------------------
node_dir="$here/oracles/node"
if [ -f "$node_dir/package.json" ]; then
  nm="$STARPILLAR_CACHE/node"
  want="$(hash_of "$node_dir/package.json" "$node_dir/package-lock.json" "$node_dir/.npmrc")"
  if ! stamp_ok "$nm/.stamp" "$want"; then
    echo "==> npm: installing node oracles into $nm"
    mkdir -p "$nm"
    cp "$node_dir/package.json" "$nm/"
    [ -f "$node_dir/package-lock.json" ] && cp "$node_dir/package-lock.json" "$nm/"
    [ -f "$node_dir/.npmrc" ] && cp "$node_dir/.npmrc" "$nm/"
    (cd "$nm" && npm install --no-audit --no-fund --loglevel=error)
    echo "$want" > "$nm/.stamp"
  else
    echo "==> npm: node oracles up to date"
  fi
fi
echo "==> setup done"
