"""``python -m kswarm``: the same as the ``kswarm`` script."""
from kswarm.cli import main

main()
