"""`python -m meshroute` is the `meshroute` command."""

from meshroute.cli import main

main()
