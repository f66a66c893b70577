"""The durable core: the event log, its blobs and snapshots, and the home directory.

Imports nothing above ``agentos.errors`` / ``agentos.param``. Every SQLite decision lives in
``log.py``; only apsw (a current SQLite, >= 3.51.3) ever touches the log file.
"""
