"""The whole AgentOS error taxonomy, shared by the kernel, the SDK and every client.

Every failure a caller can see is one of these, and crosses the socket as
``{code, category, severity, message, retryable, correlation}``. ``code`` is a
POSIX-style name where one fits (ENOENT, EAGAIN, ...); ``category`` says what kind
of failure it is and picks the class on the receiving side.

    BaseException
     ├── AgentCancelled            TERM raised at an agent's current trap (not catchable by
     │                             a bare ``except Exception``, as trio's Cancelled)
     └── Exception
          └── AgentOSError          code · category · severity · message · retryable · correlation
               ├── InvalidArgument      invalid       EINVAL, E2BIG, EBADMSG, ENOSYS
               ├── PermissionDenied     denied        EPERM, EACCES
               ├── QuotaExceeded        quota         EDQUOT
               ├── NotFound             not-found     ENOENT, ESRCH, ECHILD
               ├── Conflict             conflict      EEXIST, EBUSY, ELOCKED
               ├── WouldBlock           would-block   EAGAIN
               ├── TimedOut             timeout       ETIMEDOUT
               ├── IOFailure            io            EIO
               ├── NetworkError         network       ECONNREFUSED, ECONNRESET
               ├── LLMError             llm           ELLM
               ├── SecurityViolation    security      ESECURITY
               ├── ReplayDivergence     replay        EREPLAY
               ├── Rewound              replay        EREWOUND
               └── InternalError        internal      EINTERNAL, ESTORE
"""

from __future__ import annotations

from typing import Any, ClassVar


class AgentCancelled(BaseException):
    """Raised inside an agent at its current trap when it receives TERM (or INT, HUP)."""

    def __init__(self, signal: str = "TERM") -> None:
        super().__init__(signal)
        self.signal = signal


class AgentOSError(Exception):
    """Base of every typed error; carries the wire fields of ARCHITECTURE.md §3."""

    category: ClassVar[str] = "internal"
    default_code: ClassVar[str] = "EINTERNAL"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        severity: str = "error",
        retryable: bool | None = None,
        correlation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.severity = severity
        self.retryable = self.default_retryable if retryable is None else retryable
        self.correlation = correlation

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "category": self.category,
            "severity": self.severity,
            "message": self.message,
            "retryable": self.retryable,
            "correlation": self.correlation,
        }

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InvalidArgument(AgentOSError):
    category = "invalid"
    default_code = "EINVAL"


class PermissionDenied(AgentOSError):
    category = "denied"
    default_code = "EPERM"


class QuotaExceeded(AgentOSError):
    category = "quota"
    default_code = "EDQUOT"


class NotFound(AgentOSError):
    category = "not-found"
    default_code = "ENOENT"


class Conflict(AgentOSError):
    category = "conflict"
    default_code = "EEXIST"


class WouldBlock(AgentOSError):
    category = "would-block"
    default_code = "EAGAIN"
    default_retryable = True


class TimedOut(AgentOSError):
    category = "timeout"
    default_code = "ETIMEDOUT"
    default_retryable = True


class IOFailure(AgentOSError):
    category = "io"
    default_code = "EIO"
    default_retryable = True


class NetworkError(AgentOSError):
    category = "network"
    default_code = "ECONNREFUSED"
    default_retryable = True


class LLMError(AgentOSError):
    category = "llm"
    default_code = "ELLM"


class SecurityViolation(AgentOSError):
    category = "security"
    default_code = "ESECURITY"


class ReplayDivergence(AgentOSError):
    """A replayed agent made a different syscall than its journal recorded."""

    category = "replay"
    default_code = "EREPLAY"


class Rewound(AgentOSError):
    category = "replay"
    default_code = "EREWOUND"


class InternalError(AgentOSError):
    category = "internal"
    default_code = "EINTERNAL"


_BY_CATEGORY: dict[str, type[AgentOSError]] = {
    cls.category: cls
    for cls in (
        InvalidArgument,
        PermissionDenied,
        QuotaExceeded,
        NotFound,
        Conflict,
        WouldBlock,
        TimedOut,
        IOFailure,
        NetworkError,
        LLMError,
        SecurityViolation,
        ReplayDivergence,
        InternalError,
    )
}


def error_from_wire(err: Any) -> AgentOSError:
    """Rebuild a typed error from its wire form; anything malformed becomes an InternalError."""
    if not isinstance(err, dict):
        return InternalError(f"malformed error from peer: {err!r}")
    category = err.get("category")
    code = err.get("code")
    cls: type[AgentOSError] = (
        _BY_CATEGORY.get(category, InternalError) if isinstance(category, str) else InternalError
    )
    if code == "EREWOUND":
        cls = Rewound
    return cls(
        str(err.get("message", "")),
        code=code if isinstance(code, str) else None,
        severity=str(err.get("severity", "error")),
        retryable=bool(err.get("retryable", False)),
        correlation=err.get("correlation") if isinstance(err.get("correlation"), str) else None,
    )
