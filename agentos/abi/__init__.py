"""The contract shared by the kernel and every client: frames, traps, syscall names.

Imported by both sides (``agentos.sdk`` and ``agentos.kernel``); it imports nothing above
``agentos.errors`` and ``agentos.param``.
"""
