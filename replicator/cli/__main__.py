"""``python -m replicator.cli``: the same entry point as the ``replicator`` script."""

from replicator.cli import main

main()
