"""Sample agents used by ``agentos demo`` and the README's tour."""
