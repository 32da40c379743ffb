#!/usr/bin/env bash
# local/postgres's entrypoint: the part of the official postgres image's
# entrypoint that slipway's examples use.
#
#   POSTGRES_PASSWORD   the superuser's password; required to initialise
#                       (unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER       the superuser (default: postgres)
#   POSTGRES_DB         a database made on first start (default: POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD
#                       how clients on the network log in (default:
#                       scram-sha-256; local socket connections are trusted)
#   /docker-entrypoint-initdb.d/*.sql, *.sh
#                       run once, after the first initialisation
#
# On first start (no $PGDATA/PG_VERSION) it runs initdb, then PostgreSQL in
# the foreground as user postgres, listening on every address, port 5432.
set -Eeuo pipefail

log() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

# `docker run local/postgres:15 -c fsync=off` means `postgres -c fsync=off`.
if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
  exec "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

# As root: make the data and socket folders the postgres user's, then run
# this script again as that user (setpriv execs: postgres stays PID 1 and
# gets the signals).
if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    log "error: the database is not initialised and POSTGRES_PASSWORD is not set"
    log "set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)"
    exit 1
  fi
  log "initialising $PGDATA (superuser $POSTGRES_USER)"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" -D "$PGDATA" >/dev/null
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # A server on the socket only, for the first database and init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --no-password)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) log "running $f"; . "$f" ;;
      *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  log "initialised; starting"
fi

exec "$@"
