#!/bin/sh
# Creates Temporal's two databases on PostgreSQL and brings their schemas to the version the
# admin-tools image carries. Safe to run again: an existing database is kept, and
# update-schema applies only the versions not yet applied.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS names the PostgreSQL host}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
export SQL_PASSWORD="${POSTGRES_PWD:?POSTGRES_PWD is required}"

sql() {
	database="$1"
	shift
	temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" \
		-u "$POSTGRES_USER" --db "$database" "$@"
}

for pair in temporal:temporal temporal_visibility:visibility; do
	name="${pair%%:*}"
	schema="${pair#*:}"
	# create fails when the database exists: then only the schema update is due.
	if sql "$name" create 2>/dev/null; then
		sql "$name" setup-schema -v 0.0
	fi
	sql "$name" update-schema -d "/etc/temporal/schema/postgresql/v12/$schema/versioned"
done
echo "Temporal schemas are up to date"
