#!/bin/sh
# Creates the app's namespace once the Temporal frontend answers (a fresh PostgreSQL-backed
# server has none). Safe to run again.
set -eu
address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
namespace="${TEMPORAL_NAMESPACE:-default}"
tries=0
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
	tries=$((tries + 1))
	if [ "$tries" -ge 60 ]; then
		echo "Temporal at $address did not become healthy" >&2
		exit 1
	fi
	sleep 2
done
if temporal operator namespace describe --address "$address" -n "$namespace" >/dev/null 2>&1; then
	echo "namespace $namespace exists"
else
	temporal operator namespace create --address "$address" -n "$namespace"
fi
