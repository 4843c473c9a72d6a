"""`python -m frugalrl ...` runs the command line."""

from frugalrl.cli import main

main()
