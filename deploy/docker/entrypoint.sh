#!/bin/sh
# Container entrypoint: migrate the database, then run ticketgw (default: `serve`).
#
# `ticketgw db upgrade` is safe to repeat. When several replicas start at once, run the
# upgrade once yourself and start the replicas with TICKETGW_DB_UPGRADE=no.
# Exit codes pass through: 2 = config error, 75 = database not reachable yet (retry).
set -eu

if [ "${TICKETGW_DB_UPGRADE:-yes}" != "no" ]; then
    ticketgw db upgrade
fi

# no arguments: serve (the image's CMD says the same)
if [ "$#" -eq 0 ]; then
    set -- serve
fi

# exec: ticketgw becomes PID 1 and gets SIGTERM from `docker stop` (it stops cleanly on it)
exec ticketgw "$@"
