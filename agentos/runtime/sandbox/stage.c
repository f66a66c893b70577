/* agentos-stage: the small exec'd step of the process-agent launcher (agentos/runtime/sandbox/stage.py
 * compiles it once per source hash; launch.py runs it).
 *
 * Why C: Landlock must be applied by the confined process itself after bubblewrap has built its mounts
 * (a Landlock domain forbids mount(2)), rlimits must be set before exec, the channel must sit at fd 3 and
 * nothing else above 2 may leak, and the agent's *real* wait status (SIGSEGV vs exit(139)) is only
 * visible to its parent. A Python step would cost ~10-40 ms per spawn; this costs one exec and a fork.
 *
 * usage: agentos-stage [OPTIONS] -- PROGRAM ARGS...   (options apply in the order given)
 *   -g PATH      write our pid into PATH (a cgroup.procs file): outer use, before exec'ing bwrap
 *   -F FD:DIR    outer use: enter a private mount namespace (and a user namespace where unprivileged),
 *                mount the FUSE connection FD (an open /dev/fuse) at DIR, close FD. The mount exists only
 *                in that namespace (bwrap binds DIR at /work); closing FD leaves the kernel the only
 *                holder of the connection, so a dead kernel aborts it instead of leaving the agent stuck
 *   -l RES:VAL   setrlimit(RES, VAL/VAL), never raising the current hard limit
 *   -r PATH      Landlock: PATH read + execute          -w PATH   Landlock: PATH read + write
 *   -d PATH      Landlock: list directories under PATH (no file reads)
 *   -L           Landlock is required (exit 126 when the kernel lacks it)
 *   -N           Landlock (ABI >= 4): no TCP bind/connect  -S  Landlock (ABI >= 6): scope signals and
 *                abstract unix sockets to the sandbox
 *   -s FD        reaper mode: run PROGRAM as our child and write its raw wait status ("%d\n") to FD
 *   -x           exec PROGRAM in place (no reaper)
 * Reaper mode is pid 1 of the sandbox: it forwards TERM/INT/HUP/QUIT/USR1/USR2/WINCH/CONT/ALRM to the
 * program, reaps orphans, and exits with the program's status (128+N for a signal).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define LL_CREATE 444
#define LL_ADD 445
#define LL_RESTRICT 446
#define LL_VERSION 1u
#define MAX_RULES 64

struct ll_attr { uint64_t fs, net, scoped; };
struct ll_path { uint64_t allowed; int32_t fd; } __attribute__((packed));

static const char *rule_path[MAX_RULES];
static int rule_rw[MAX_RULES];
static int n_rules, ll_required, ll_net, ll_scope;

static void die(const char *what, const char *arg, int code) {
    dprintf(2, "agentos-stage: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    _exit(code);
}

static int landlock(void) {
    int abi = (int)syscall(LL_CREATE, NULL, 0, LL_VERSION);
    if (abi < 1) {
        if (ll_required) die("landlock unavailable", NULL, 126);
        return 0;
    }
    uint64_t all = (1ull << 13) - 1, file = 1 | 2 | 4;
    if (abi >= 2) all |= 1ull << 13;
    if (abi >= 3) { all |= 1ull << 14; file |= 1ull << 14; }
    if (abi >= 5) { all |= 1ull << 15; file |= 1ull << 15; }
    struct ll_attr attr = {all, 0, 0};
    size_t size = sizeof(uint64_t);
    if (ll_net && abi >= 4) { attr.net = 1 | 2; size = 2 * sizeof(uint64_t); }
    if (ll_scope && abi >= 6) { attr.scoped = 1 | 2; size = sizeof attr; }
    int rs = (int)syscall(LL_CREATE, &attr, size, 0);
    if (rs < 0) die("landlock_create_ruleset", NULL, 126);
    for (int i = 0; i < n_rules; i++) {
        int fd = open(rule_path[i], O_PATH | O_CLOEXEC);
        if (fd < 0) continue;  /* a path the sandbox lacks grants nothing */
        struct stat st;
        if (fstat(fd, &st) < 0) die("fstat", rule_path[i], 126);
        struct ll_path pb = {rule_rw[i] == 1 ? all : rule_rw[i] == 2 ? 8 : (1 | 4 | 8), fd};
        if (!S_ISDIR(st.st_mode)) pb.allowed &= file;
        if (syscall(LL_ADD, rs, 1, &pb, 0) < 0) die("landlock_add_rule", rule_path[i], 126);
        close(fd);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs", NULL, 126);
    if (syscall(LL_RESTRICT, rs, 0) < 0) die("landlock_restrict_self", NULL, 126);
    close(rs);
    return abi;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die("write", path, 125);
    close(fd);
}

/* -F FD:DIR (see the usage above). user_id/group_id: the uid/gid we mount as, seen from our namespace;
 * max_read matches fuseproto.MAX_WRITE. */
static void fuse_mount(const char *v) {
    char *end, opts[160], map[64];
    long fd = strtol(v, &end, 10);
    if (end == v || *end != ':' || fd < 0 || !end[1]) { errno = EINVAL; die("bad -F (FD:DIR)", v, 125); }
    const char *dir = end + 1;
    unsigned uid = (unsigned)getuid(), gid = (unsigned)getgid();
    if (unshare(CLONE_NEWNS) < 0) {  /* unprivileged: FUSE mounts in a user namespace (Linux >= 4.18) */
        if (errno != EPERM || unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) die("unshare", "mount namespace", 125);
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "%u %u 1", uid, uid);
        write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "%u %u 1", gid, gid);
        write_file("/proc/self/gid_map", map);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private", NULL, 125);
    snprintf(opts, sizeof opts, "fd=%ld,rootmode=40000,user_id=%u,group_id=%u,allow_other,max_read=131072",
             fd, uid, gid);
    if (mount("agentos", dir, "fuse.agentos", MS_NOSUID | MS_NODEV, opts) < 0) die("mount fuse at", dir, 125);
    close((int)fd);
}

static void close_above(int keep) {
    if (syscall(SYS_close_range, keep + 1, ~0u, 0) == 0) return;
    for (int fd = keep + 1; fd < 65536; fd++) close(fd);
}

int main(int argc, char **argv) {
    int i = 1, status_fd = -1, exec_in_place = 0;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-L")) { ll_required = 1; continue; }
        if (!strcmp(o, "-N")) { ll_net = 1; continue; }
        if (!strcmp(o, "-S")) { ll_scope = 1; continue; }
        if (!strcmp(o, "-x")) { exec_in_place = 1; continue; }
        if (!v) { errno = EINVAL; die("missing value for", o, 125); }
        i++;
        if (!strcmp(o, "-g")) {
            char buf[32];
            int fd = open(v, O_WRONLY | O_CLOEXEC), n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
            if (fd < 0 || write(fd, buf, (size_t)n) != n) die("join cgroup", v, 125);
            close(fd);
        } else if (!strcmp(o, "-F")) {
            fuse_mount(v);
        } else if (!strcmp(o, "-l")) {
            int res; unsigned long long val;
            if (sscanf(v, "%d:%llu", &res, &val) != 2) { errno = EINVAL; die("bad rlimit", v, 125); }
            struct rlimit cur, lim = {(rlim_t)val, (rlim_t)val};
            if (getrlimit(res, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && lim.rlim_max > cur.rlim_max)
                lim.rlim_cur = lim.rlim_max = cur.rlim_max;
            if (setrlimit(res, &lim) < 0) die("setrlimit", v, 125);
        } else if (!strcmp(o, "-r") || !strcmp(o, "-w") || !strcmp(o, "-d")) {
            if (n_rules == MAX_RULES) { errno = E2BIG; die("too many paths", v, 125); }
            rule_path[n_rules] = v;
            rule_rw[n_rules++] = o[1] == 'w' ? 1 : o[1] == 'd' ? 2 : 0;
        } else if (!strcmp(o, "-s")) {
            status_fd = atoi(v);
        } else { errno = EINVAL; die("unknown option", o, 125); }
    }
    if (i + 1 >= argc) { errno = EINVAL; die("no program after --", NULL, 125); }
    char **prog = argv + i + 1;
    if (n_rules || ll_required || ll_net || ll_scope) landlock();
    if (exec_in_place || status_fd < 0) {
        execvp(prog[0], prog);
        die("exec", prog[0], errno == ENOENT ? 127 : 126);
    }
    int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t k = 0; k < sizeof fwd / sizeof *fwd; k++) sigaddset(&set, fwd[k]);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t child = fork();
    if (child < 0) die("fork", NULL, 126);
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        close_above(3);  /* hygiene: the agent holds exactly 0, 1, 2 and its channel */
        execvp(prog[0], prog);
        die("exec", prog[0], errno == ENOENT ? 127 : 126);
    }
    for (int fd = 0; fd <= 3; fd++) if (fd != status_fd) close(fd);
    int status = 0;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0) continue;
        if (sig != SIGCHLD) { kill(child, sig); continue; }
        pid_t pid;
        int st, done = 0;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            if (pid == child) { status = st; done = 1; }
        if (done) break;
    }
    dprintf(status_fd, "%d\n", status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
