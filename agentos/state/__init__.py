"""Pure projections of the event log: ``apply(state, event)`` and the state they build.

Nothing here reads the clock, randomness or any file: the state after event N is a function of
events 1..N alone, which is what lets the kernel rebuild, verify and (later) rewind it.
"""
