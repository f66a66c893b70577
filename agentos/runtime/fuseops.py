"""The FUSE operations of ``fusefs.FuseView``: each a few VFS syscalls made as the agent.

An operation returns the reply's payload (bytes), or a coroutine giving it when a syscall may
park; a typed error becomes its errno (``fusefs.errno_of``). The steps of one operation that
must not interleave with another's (a seek and its read) run in one synchronous stretch of the
loop, so no other syscall comes between them.
"""

from __future__ import annotations

import errno
import os
import stat as st
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentos.errors import AgentOSError
from agentos.runtime import fuseproto as fp
from agentos.runtime.fusefs import FuseError, Handle

if TYPE_CHECKING:
    from agentos.runtime.fusefs import FuseView

Op = Callable[["FuseView", fp.Request], Any]
DT = {"file": 8, "dir": 4, "symlink": 10, "chardev": 2}  # dirent types (DT_REG, DT_DIR, DT_LNK, DT_CHR)


def _name(raw: bytes) -> str:
    name = raw.decode("utf-8")  # strict: a VFS name is Unicode text
    if not name or "/" in name or name in (".", ".."):
        raise FuseError(errno.EINVAL)
    return name


def _attr(v: FuseView, req: fp.Request, s: dict[str, Any]) -> bytes:
    return fp.attr(int(s["ino"]), s, req.uid, req.gid)


def _entry(v: FuseView, req: fp.Request, parent: int, name: str) -> bytes:
    """Look ``name`` up in ``parent`` and answer with its entry (one more kernel lookup of it)."""
    s = v.call_now("stat", path=v.path(parent, name), follow=False)
    nodeid = v.remember(parent, name, int(s["ino"]))
    return fp.entry(nodeid, _attr(v, req, s), v.timeout)


def _flags(oflags: int) -> list[str]:
    acc = oflags & os.O_ACCMODE
    out = ["read"] if acc in (os.O_RDONLY, os.O_RDWR) else []
    if acc in (os.O_WRONLY, os.O_RDWR):
        out.append("append" if oflags & os.O_APPEND else "write")
    if oflags & os.O_TRUNC and acc != os.O_RDONLY:
        out.append("truncate")
    return out


def _handle(v: FuseView, fh: int) -> Handle:
    h = v.t.files.get(fh)
    if h is None:
        raise FuseError(errno.EBADF)
    return h


# -- the connection --------------------------------------------------------------------------------


def op_init(v: FuseView, req: fp.Request) -> bytes:
    out, v.minor = fp.init_reply(req.body)
    return out


def op_destroy(v: FuseView, req: fp.Request) -> bytes:
    return b""


def op_forget(v: FuseView, req: fp.Request) -> None:
    (n,) = fp.FORGET_IN.unpack_from(req.body)
    v.forget(req.nodeid, n)


def op_batch_forget(v: FuseView, req: fp.Request) -> None:
    count, _ = fp.BATCH_FORGET_IN.unpack_from(req.body)
    for i in range(count):
        nodeid, n = fp.FORGET_ONE.unpack_from(req.body, fp.BATCH_FORGET_IN.size + i * fp.FORGET_ONE.size)
        v.forget(nodeid, n)


def op_interrupt(v: FuseView, req: fp.Request) -> None:
    return None  # the interrupted call ends when its syscall does; its late reply is dropped by the kernel


def op_statfs(v: FuseView, req: fp.Request) -> bytes:
    return fp.KSTATFS.pack(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096)


# -- names and attributes ---------------------------------------------------------------------------


def op_lookup(v: FuseView, req: fp.Request) -> bytes:
    (raw,) = fp.names(req.body, 1)
    return _entry(v, req, req.nodeid, _name(raw))


SEALED_ROOT = {"ino": 1, "kind": "dir", "mode": 0o111, "nlink": 2, "size": 0}  # a root it may not list


def op_getattr(v: FuseView, req: fp.Request) -> bytes:
    try:
        s = v.call_now("stat", path=v.path(req.nodeid), follow=False)
    except AgentOSError as e:
        if req.nodeid != fp.ROOT_ID or e.code != "EACCES":
            raise
        s = SEALED_ROOT
    return fp.attr_out(_attr(v, req, s), v.timeout)


def op_setattr(v: FuseView, req: fp.Request) -> bytes:
    f = fp.SETATTR_IN.unpack_from(req.body)
    valid, fh, size, mode = f[0], f[2], f[3], f[11]
    path = v.path(req.nodeid)
    if valid & fp.FATTR_MODE:
        v.call_now("chmod", path=path, mode=mode & 0o7777)
    if valid & fp.FATTR_SIZE:
        h = v.t.files.get(fh) if valid & fp.FATTR_FH else None
        if h is not None and h.writable:
            v.call_now("ftruncate", fd=h.fd, size=size)
            h.dirty = True
        else:
            v.call_now("truncate", path=path, size=size)
    # owners and times are not modelled by the VFS: a file belongs to whoever asks, mtime is the last change
    s = v.call_now("stat", path=path, follow=False)
    return fp.attr_out(_attr(v, req, s), v.timeout)


def op_access(v: FuseView, req: fp.Request) -> bytes:
    mask, _ = fp.ACCESS_IN.unpack_from(req.body)
    s = v.call_now("stat", path=v.path(req.nodeid), follow=False)
    mode = int(s.get("mode", 0))
    if mask & os.X_OK and s.get("kind") != "dir" and not mode & 0o111:
        raise FuseError(errno.EACCES)
    if v.caller.confined and (mask & os.R_OK and not mode & 0o400 or mask & os.W_OK and not mode & 0o200):
        raise FuseError(errno.EACCES)  # the owner bits the VFS enforces on agents
    return b""


def op_readlink(v: FuseView, req: fp.Request) -> bytes:
    target = v.call_now("readlink", path=v.path(req.nodeid))
    return str(target).encode()


# -- changing names ---------------------------------------------------------------------------------


def op_mkdir(v: FuseView, req: fp.Request) -> bytes:
    mode, _umask = fp.MKDIR_IN.unpack_from(req.body)
    (raw,) = fp.names(req.body[fp.MKDIR_IN.size :], 1)
    name = _name(raw)
    v.call_now("mkdir", path=v.path(req.nodeid, name), mode=mode & 0o7777)
    return _entry(v, req, req.nodeid, name)


def op_mknod(v: FuseView, req: fp.Request) -> bytes:
    mode, _rdev, _umask, _ = fp.MKNOD_IN.unpack_from(req.body)
    (raw,) = fp.names(req.body[fp.MKNOD_IN.size :], 1)
    name = _name(raw)
    if not st.S_ISREG(mode):
        raise FuseError(errno.EPERM)  # no devices, fifos or sockets in the VFS
    fd = v.call_now(
        "open", path=v.path(req.nodeid, name), flags=["write", "create", "exclusive"], mode=mode & 0o7777
    )
    v.call_now("close", fd=fd)
    return _entry(v, req, req.nodeid, name)


def op_symlink(v: FuseView, req: fp.Request) -> bytes:
    raw, target = fp.names(req.body, 2)
    name = _name(raw)
    v.call_now("symlink", target=target.decode("utf-8"), path=v.path(req.nodeid, name))
    return _entry(v, req, req.nodeid, name)


def op_link(v: FuseView, req: fp.Request) -> bytes:
    (old,) = fp.LINK_IN.unpack_from(req.body)
    (raw,) = fp.names(req.body[fp.LINK_IN.size :], 1)
    name = _name(raw)
    v.call_now("link", src=v.path(old), dst=v.path(req.nodeid, name))
    return _entry(v, req, req.nodeid, name)


def op_unlink(v: FuseView, req: fp.Request) -> bytes:
    (raw,) = fp.names(req.body, 1)
    v.call_now("unlink", path=v.path(req.nodeid, _name(raw)))
    return b""


def op_rmdir(v: FuseView, req: fp.Request) -> bytes:
    (raw,) = fp.names(req.body, 1)
    v.call_now("rmdir", path=v.path(req.nodeid, _name(raw)))
    return b""


def _rename(v: FuseView, req: fp.Request, newdir: int, body: memoryview, flags: int) -> bytes:
    old, new = (_name(n) for n in fp.names(body, 2))
    src, dst = v.path(req.nodeid, old), v.path(newdir, new)
    if flags & ~fp.RENAME_NOREPLACE:
        raise FuseError(errno.EINVAL)  # RENAME_EXCHANGE, RENAME_WHITEOUT: not in the VFS
    if flags & fp.RENAME_NOREPLACE:  # checked and renamed in one step of the loop: nothing comes between
        try:
            v.call_now("stat", path=dst, follow=False)
        except AgentOSError as e:
            if e.code != "ENOENT":
                raise
        else:
            raise FuseError(errno.EEXIST)
    v.call_now("rename", src=src, dst=dst)
    moved = v.call_now("stat", path=dst, follow=False)
    nodeid = v.t.by_ino.get(int(moved["ino"]))
    if nodeid is not None and nodeid != 1:  # its children's paths follow it
        node = v.t.nodes[nodeid]
        node.parent, node.name = newdir, new
    return b""


def op_rename(v: FuseView, req: fp.Request) -> bytes:
    (newdir,) = fp.RENAME_IN.unpack_from(req.body)
    return _rename(v, req, newdir, req.body[fp.RENAME_IN.size :], 0)


def op_rename2(v: FuseView, req: fp.Request) -> bytes:
    newdir, flags, _ = fp.RENAME2_IN.unpack_from(req.body)
    return _rename(v, req, newdir, req.body[fp.RENAME2_IN.size :], flags)


# -- files ------------------------------------------------------------------------------------------


def _opened(v: FuseView, nodeid: int, fd: int, flags: list[str]) -> bytes:
    writable = bool({"write", "append"} & set(flags))
    v.t.files[fd] = Handle(fd, nodeid, 0, writable, "truncate" in flags)
    if "append" in flags:
        v.t.files[fd].offset = -1  # where an append lands is the file's end: seek before any read
    return fp.OPEN_OUT.pack(fd, 0, 0)  # no keep_cache: the page cache is dropped at each open


def op_open(v: FuseView, req: fp.Request) -> bytes:
    oflags, _ = fp.OPEN_IN.unpack_from(req.body)
    path = v.path(req.nodeid)
    flags = _flags(oflags)
    if oflags & os.O_TRUNC and oflags & os.O_ACCMODE == os.O_RDONLY:
        v.call_now("truncate", path=path, size=0)  # as Linux does
    fd = v.call_now("open", path=path, flags=flags)
    return _opened(v, req.nodeid, int(fd), flags)


def op_create(v: FuseView, req: fp.Request) -> bytes:
    oflags, mode, _umask, _ = fp.CREATE_IN.unpack_from(req.body)
    (raw,) = fp.names(req.body[fp.CREATE_IN.size :], 1)
    name = _name(raw)
    flags = [*_flags(oflags), "create"] + (["exclusive"] if oflags & os.O_EXCL else [])
    fd = int(v.call_now("open", path=v.path(req.nodeid, name), flags=flags, mode=mode & 0o7777))
    try:
        out = _entry(v, req, req.nodeid, name)
    except BaseException:
        v.call_now("close", fd=fd)
        raise
    nodeid = fp.ENTRY.unpack_from(out)[0]
    return out + _opened(v, nodeid, fd, flags)


def _seek(v: FuseView, h: Handle, offset: int) -> None:
    if h.offset != offset:
        h.offset = int(v.call_now("seek", fd=h.fd, offset=offset))


def op_read(v: FuseView, req: fp.Request) -> bytes:
    fh, offset, size, *_ = fp.READ_IN.unpack_from(req.body)
    h = _handle(v, fh)
    _seek(v, h, offset)
    data = bytes(v.call_now("read", fd=h.fd, n=min(size, fp.MAX_WRITE)))
    h.offset += len(data)
    return data


def op_write(v: FuseView, req: fp.Request) -> bytes:
    fh, offset, size, *_ = fp.WRITE_IN.unpack_from(req.body)
    data = bytes(req.body[fp.WRITE_IN.size : fp.WRITE_IN.size + size])
    h = _handle(v, fh)
    if h.offset != -1:
        _seek(v, h, offset)
    n = int(v.call_now("write", fd=h.fd, data=data))
    h.dirty = True
    h.offset = -1 if h.offset == -1 else h.offset + n
    return fp.WRITE_OUT.pack(n, 0)


async def op_flush(v: FuseView, req: fp.Request) -> bytes:
    """close(2) of an fd on the file: cut a version now, not at RELEASE (which comes later, async)."""
    (fh,) = fp.FH_IN.unpack_from(req.body)
    h = v.t.files.get(fh)
    if h is not None and h.dirty:
        h.dirty = False
        await v.call("fsync", fd=h.fd)
    return b""


async def op_fsync(v: FuseView, req: fp.Request) -> bytes:
    (fh,) = fp.FH_IN.unpack_from(req.body)
    h = _handle(v, fh)
    h.dirty = False
    await v.call("fsync", fd=h.fd)
    return b""


async def op_release(v: FuseView, req: fp.Request) -> bytes:
    (fh,) = fp.FH_IN.unpack_from(req.body)
    h = v.t.files.pop(fh, None)
    if h is not None:
        try:
            await v.call("close", fd=h.fd)
        except AgentOSError:
            pass  # EBADF: the process exited and its fds were closed with it
    return b""


# -- directories ------------------------------------------------------------------------------------


def op_opendir(v: FuseView, req: fp.Request) -> bytes:
    path = v.path(req.nodeid)
    names = v.call_now("readdir", path=path)
    me = v.call_now("stat", path=path)
    node = v.t.nodes.get(req.nodeid)
    parent = v.t.nodes.get(node.parent) if node is not None and node.parent else None
    entries: list[tuple[bytes, int, int]] = [
        (b".", int(me["ino"]), 4),
        (b"..", parent.ino if parent else 1, 4),
    ]
    for name in names:
        try:
            s = v.call_now("stat", path=v.path(req.nodeid, name), follow=False)
            entries.append((name.encode(), int(s["ino"]) or 1, DT.get(s.get("kind", ""), 0)))
        except AgentOSError:
            entries.append((name.encode(), 1, 0))  # gone, or hidden from this agent: listed as named
    fh = v.t.next_dir
    v.t.next_dir += 1
    v.t.dirs[fh] = entries  # type: ignore[assignment]
    return fp.OPEN_OUT.pack(fh, 0, 0)


def op_readdir(v: FuseView, req: fp.Request) -> bytes:
    fh, offset, size, *_ = fp.READ_IN.unpack_from(req.body)
    entries = v.t.dirs.get(fh)
    if entries is None:
        raise FuseError(errno.EBADF)
    out = bytearray()
    for i in range(offset, len(entries)):
        name, ino, dtype = entries[i]  # type: ignore[misc]
        raw = fp.dirent(ino, i + 1, name, dtype)
        if len(out) + len(raw) > size:
            break
        out += raw
    return bytes(out)


def op_releasedir(v: FuseView, req: fp.Request) -> bytes:
    (fh,) = fp.FH_IN.unpack_from(req.body)
    v.t.dirs.pop(fh, None)
    return b""


def op_fsyncdir(v: FuseView, req: fp.Request) -> bytes:
    return b""  # every name change is an event, durable before its reply


OPS: dict[int, Op] = {
    fp.INIT: op_init,
    fp.DESTROY: op_destroy,
    fp.FORGET: op_forget,
    fp.BATCH_FORGET: op_batch_forget,
    fp.INTERRUPT: op_interrupt,
    fp.STATFS: op_statfs,
    fp.LOOKUP: op_lookup,
    fp.GETATTR: op_getattr,
    fp.SETATTR: op_setattr,
    fp.ACCESS: op_access,
    fp.READLINK: op_readlink,
    fp.MKDIR: op_mkdir,
    fp.MKNOD: op_mknod,
    fp.SYMLINK: op_symlink,
    fp.LINK: op_link,
    fp.UNLINK: op_unlink,
    fp.RMDIR: op_rmdir,
    fp.RENAME: op_rename,
    fp.RENAME2: op_rename2,
    fp.OPEN: op_open,
    fp.CREATE: op_create,
    fp.READ: op_read,
    fp.WRITE: op_write,
    fp.FLUSH: op_flush,
    fp.FSYNC: op_fsync,
    fp.RELEASE: op_release,
    fp.OPENDIR: op_opendir,
    fp.READDIR: op_readdir,
    fp.RELEASEDIR: op_releasedir,
    fp.FSYNCDIR: op_fsyncdir,
}
