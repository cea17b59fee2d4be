#!/bin/sh
# First start: a cluster whose superuser `dispatch` has the password of $POSTGRES_PASSWORD_FILE
# (scram-sha-256 over the network; nothing trusts by address), and the `dispatch` database.
# Later starts: the cluster as it is. Runs in the foreground as `postgres`.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$bin/initdb" --pgdata "$PGDATA" --username dispatch --pwfile "$POSTGRES_PASSWORD_FILE" \
    --auth-local scram-sha-256 --auth-host scram-sha-256 --encoding UTF8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # Single-user mode: no server, no connection, so the password goes nowhere but initdb.
  echo "CREATE DATABASE dispatch;" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
