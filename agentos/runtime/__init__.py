"""Runtimes: where agents actually run — the in-kernel stepper and the socket server."""
