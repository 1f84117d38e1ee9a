#!/bin/sh
# Container entrypoint: migrate the database, then run ticketgw (default: `serve`).
#
# `ticketgw db upgrade` is safe to repeat, also by several replicas at once (on PostgreSQL
# they take turns under an advisory lock). TICKETGW_DB_UPGRADE=no skips it, for those who
# migrate as a separate deployment step.
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
