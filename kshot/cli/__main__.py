"""``python -m kshot.cli``: the ``kshot`` console script."""

from kshot.cli import main

main()
