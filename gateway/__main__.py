"""`python -m gateway` is the same as the `ticketgw` command."""

from gateway.cli import main

main()
