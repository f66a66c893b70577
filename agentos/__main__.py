"""``python -m agentos``: the ``agentos`` command."""

from agentos.user.cli import main

main()
