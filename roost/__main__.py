"""``python -m roost``: the same command line as the ``roost`` script."""

from roost.cli import main

main()
