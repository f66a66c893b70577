"""Limits and defaults in one place (as xv6's param.h). Nothing here reads the environment."""

ABI_VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024  # a larger frame is refused and its connection closed
MAX_ARG_BYTES = 1024 * 1024  # any single string/bytes argument
MAX_ARGV = 256  # arguments to spawn
MAX_CONSOLE_WRITE = 256 * 1024  # bytes per write_console
MAX_RANDOM_BYTES = 64 * 1024
MAX_SLEEP_SECONDS = 365 * 24 * 3600
MAX_PROCESSES = 10_000  # live (not dead) processes
MAX_PATH = 4096  # bytes of a file system path argument
MAX_FILE_BYTES = 256 * 1024 * 1024  # a file's size (its manifest is handled whole: see kernel/fileversion.py)
TMP_MAX_BYTES = 256 * 1024 * 1024  # a process's private /tmp, in memory (ENOSPC past it: kernel/vfs/tmpfs.py)
WATCH_MAX_CHANGES = 1000  # changes one watch call returns at most (kernel/syswatch.py)
WATCH_FEED_CHANGES = 32_768  # recent changes the kernel keeps for watchers; older ones are reported lost
TXN_MAX_OPS = 1000  # ops in one fs_transaction (kernel/systxn.py)
TXN_MAX_BYTES = 16 * 1024 * 1024  # bytes one fs_transaction writes, all its ops together
HISTORY_MAX_ROWS = 1000  # rows one fs_history call returns at most (page on with since)
UNDO_MAX_REPORT = 1000  # entries per list in an fs_undo report (the counts say how many in all)
# agentos diff A B (kernel/pastdiff.py): what one reply may hold (the counts say how many in all)
DIFF_FILES, DIFF_MAX_FILES = 200, 5000  # changed files listed: by default, at most
DIFF_BYTES, DIFF_MAX_BYTES = 256 * 1024, 1024 * 1024  # unified diff text, all files together
DIFF_ROWS = 500  # entries per list of processes and capabilities
DIFF_TEXT_BYTES = 1024 * 1024  # a side larger than this gets sizes and hashes, no unified diff
DIFF_HASH_BYTES = 16 * 1024 * 1024  # a side larger than this is not read at all (sizes only)
DIFF_READ_BYTES = 64 * 1024 * 1024  # file bytes one diff reads, all files together
DIFF_MAX_INODES = 20_000  # changed inodes examined (~25 us each: a lookup and a path in both states)
# agentos query and bisect (kernel/query.py, store/sqlquery.py): each query on a worker thread of its own
QUERY_ROWS, QUERY_MAX_ROWS = 10_000, 100_000  # rows one answer holds: by default, at most
QUERY_SECONDS, QUERY_MAX_SECONDS = 5.0, 60.0  # how long one query (one bisect probe) may run
QUERY_REPLY_BYTES = 2 * 1024 * 1024  # about this much cell data in one answer, then it is truncated
QUERY_WORKERS, QUERY_MAX_PENDING = 2, 8  # threads running queries; queries queued or running, at most
# agentos replay PID / record export (kernel/sysreplay.py): an agent's recorded calls, page by page
REPLAY_STEPS, REPLAY_MAX_STEPS = 200, 5000  # calls one replay_steps answer holds: by default, at most
REPLAY_REPLY_BYTES = 2 * 1024 * 1024  # about this much journal data in one answer, then the page ends

INIT_PID = 1
MAIN_BRANCH = 1
KERNEL_PID = 0  # "caused by the kernel itself" in events

# take a snapshot after this many events: a past state (agentos at, rewind) replays at most this many
# after loading one (~4 us each); at 5000, `at` took ~21 ms median, ~50 worst at 1M events, for
# ~73 bytes of snapshot an event (bench/timetravel_benches.py; docs/timetravel.md: the trade-off)
SNAPSHOT_EVERY_EVENTS = 5_000
STEP_SLICE_SECONDS = 0.001  # the dispatcher yields to the asyncio loop about this often
WATCHDOG_SECONDS = 2.0  # an in-kernel agent running this long without yielding is interrupted
WATCHDOG_KILL_AFTER = 3  # interrupts ignored in one step before the last resort ...
WATCHDOG_GIVE_UP_SECONDS = 30.0  # ... once the kernel thread has been stuck this long: end the kernel
TERM_GRACE_SECONDS = 5.0  # TERM then KILL after this long
RESUME_QUARANTINE_AFTER = 3  # failed resumes in a row before an agent is quarantined
CPU_CHARGE_EVERY_NS = 200_000_000  # flush accumulated CPU time to the ledger this often per agent

# capabilities
MAX_DELEGATION_DEPTH = 16  # the root's; every delegation spends one
EXPIRY_SWEEP_SECONDS = 1.0  # at most this late, a capability's expiry is recorded in the audit trail
APPROVAL_DEFAULT_SECONDS = 3600.0  # how long an approved request's grant lasts unless --for says
APPROVAL_WAIT_SECONDS = 24 * 3600.0  # how long cap_request waits for a person unless timeout says

# cgroups of process agents (runtime/sandbox/cgroups.py)
CGROUP_SETTLE_SECONDS = 5.0  # how long freeze, kill and removal of an agent's group may take

# process agents (runtime/procagents.py)
PROC_RESTART_BACKOFF_SECONDS = 0.1  # the first restart's delay; doubled for each quick failure in a row
PROC_RESTART_BACKOFF_MAX_SECONDS = 60.0  # the longest delay between runs
PROC_RESTART_RESET_SECONDS = 30.0  # a run at least this long resets the backoff
PROC_OUTPUT_CHUNK = 65_536  # bytes read from a program's stdout/stderr per wake-up (one console event)
PROC_DEFAULT_PROFILE = "minimal"  # sandbox profile of `agentos run --process` unless --profile says
PROC_VFS_WORKDIRS = "/shared/agents"  # a process agent's /work is <this>/<pid> of the VFS (FUSE view)
