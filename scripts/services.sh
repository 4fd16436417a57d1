#!/usr/bin/env bash
# Start the real servers the store and rate-limit tests run against, idempotently, and export
# where they listen. Source it (so the exports reach the caller):
#     source scripts/services.sh
# - PostgreSQL (Debian's `postgresql`): a cluster made by `initdb` (as the `postgres` user when
#   run as root) under $STARPILLAR_CACHE/services/pg, trust auth on loopback only, a free port;
#   exports DATABASE_URL_TEST=postgres://postgres@127.0.0.1:PORT/postgres.
# - Redis (Debian's `redis-server`), when installed: exports REDIS_URL_TEST=redis://127.0.0.1:PORT.
# A server already started by an earlier run is reused. Missing binaries are reported and
# skipped; the tests then run their SQLite / in-process halves only.
# shellcheck shell=bash

_sp_services() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  # shellcheck source=env.sh
  source "$here/env.sh"
  local base="$STARPILLAR_CACHE/services"
  mkdir -p "$base"

  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

  # --- PostgreSQL ------------------------------------------------------------------------
  local pgbin
  pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ]; then
    local as=() dir="$base/pg"
    if [ "$(id -u)" -eq 0 ]; then
      as=(runuser -u postgres --)
      # The postgres user must reach the cluster; $HOME is often private to root.
      if ! runuser -u postgres -- test -x "$base" 2>/dev/null; then
        dir="/var/tmp/starpillar-pg-$(echo "$base" | sha256sum | cut -c1-8)"
      fi
      mkdir -p "$dir" && chown postgres: "$dir" && chmod 700 "$dir"
    fi
    local data="$dir/data" port_file="$dir/port"
    if [ ! -f "$data/PG_VERSION" ]; then
      echo "==> services: initdb $data"
      "${as[@]}" "$pgbin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    fi
    if ! "${as[@]}" "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1 || [ ! -f "$port_file" ]; then
      local port
      port="$(free_port)"
      echo "==> services: postgres on 127.0.0.1:$port"
      "${as[@]}" "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200" \
        start >/dev/null || { tail -20 "$dir/postgres.log"; return 1; }
      echo "$port" > "$port_file"
    fi
    export DATABASE_URL_TEST="postgres://postgres@127.0.0.1:$(cat "$port_file")/postgres"
    echo "==> services: DATABASE_URL_TEST=$DATABASE_URL_TEST"
  else
    echo "==> services: PostgreSQL not installed (apt: postgresql); skipping"
  fi

  # --- Redis -----------------------------------------------------------------------------
  if command -v redis-server >/dev/null 2>&1; then
    local rdir="$base/redis" rport
    mkdir -p "$rdir"
    if [ -f "$rdir/port" ] && redis-cli -p "$(cat "$rdir/port")" ping >/dev/null 2>&1; then
      rport="$(cat "$rdir/port")"
    else
      rport="$(free_port)"
      echo "==> services: redis on 127.0.0.1:$rport"
      redis-server --port "$rport" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
        --dir "$rdir" --pidfile "$rdir/redis.pid" --logfile "$rdir/redis.log"
      for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
      echo "$rport" > "$rdir/port"
    fi
    export REDIS_URL_TEST="redis://127.0.0.1:$rport"
    echo "==> services: REDIS_URL_TEST=$REDIS_URL_TEST"
  else
    echo "==> services: redis-server not installed (apt: redis-server); skipping"
  fi
}
_sp_services
