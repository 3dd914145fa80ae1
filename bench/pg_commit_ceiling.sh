#!/usr/bin/env bash
# What one PostgreSQL commits per second on this machine, with nothing of Wayang in the way: a
# one-row UPDATE per transaction (as a claim or a result is), from 1, 2, 4 and 8 clients, with
# pgbench. Then the same with a NOTIFY in each transaction (as Wayang's results send), which
# PostgreSQL commits one at a time. The floor under every figure of bench/fleet_bench.py.
#
#   bash bench/pg_commit_ceiling.sh          # SECONDS_EACH=5 CLIENTS="1 2 4 8"
#
# Uses a schema of its own in the database wayang_bench (created by fleet_bench.py or
# claim_bench.py, or here), dropped at the end.
set -eu
PGURL=${PGURL:-postgresql://postgres@127.0.0.1:5432/wayang_bench}
SECONDS_EACH=${SECONDS_EACH:-5}
CLIENTS=${CLIENTS:-1 2 4 8}
PGBENCH=${PGBENCH:-$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)}
SCHEMA=commit_ceiling_$$
WORK=$(mktemp -d)
trap 'psql "$PGURL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$WORK"' EXIT

psql "${PGURL%/*}/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = 'wayang_bench'" \
  | grep -q 1 || psql "${PGURL%/*}/postgres" -qc "CREATE DATABASE wayang_bench"
psql "$PGURL" -q <<SQL
CREATE SCHEMA $SCHEMA;
CREATE TABLE $SCHEMA.t (id INTEGER PRIMARY KEY, v BIGINT NOT NULL DEFAULT 0);
INSERT INTO $SCHEMA.t (id) SELECT g FROM generate_series(1, 10000) AS g;
SQL
cat > "$WORK/update.sql" <<SQL
\set id random(1, 10000)
UPDATE $SCHEMA.t SET v = v + 1 WHERE id = :id;
SQL
cat > "$WORK/notify.sql" <<SQL
\set id random(1, 10000)
BEGIN;
UPDATE $SCHEMA.t SET v = v + 1 WHERE id = :id;
SELECT pg_notify('$SCHEMA', 'x');
COMMIT;
SQL
for script in update notify; do
  for c in $CLIENTS; do
    "$PGBENCH" -n -c "$c" -j "$c" -T "$SECONDS_EACH" -f "$WORK/$script.sql" "$PGURL" \
      > "$WORK/out" 2>/dev/null
    tps=$(awk '/^tps/ {print $3}' "$WORK/out")
    lat=$(awk '/^latency average/ {print $4}' "$WORK/out")
    echo "COMMITS {\"script\": \"$script\", \"clients\": $c, \"tps\": $tps, \"latency_ms\": $lat}"
  done
done
