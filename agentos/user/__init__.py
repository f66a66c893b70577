"""Userland: the CLI, the demo (and later the shell, monitor, dashboard) — socket clients only."""
