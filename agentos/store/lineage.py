"""Which events make a branch's world: all of its own, and each ancestor's up to the fork.

A branch is (parent, fork seq). Branch C forked from P at F sees P's events up to F, P's parent's
up to P's own fork, and so on to main; every other event (an abandoned future, a sibling branch)
touches only the ledger. Sequence numbers are home-wide, so "up to F" is a plain comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentos.param import MAIN_BRANCH

UNBOUNDED = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Lineage:
    branch: int
    limits: tuple[tuple[int, int], ...]  # (branch, last seq of it that this world sees), own first

    @classmethod
    def of(cls, branch: int, forks: Mapping[int, tuple[int, int]]) -> Lineage:
        """``forks`` maps a branch to (parent, fork seq); main (and any unknown branch) has none."""
        limits, limit, at, seen = [], UNBOUNDED, branch, set()
        while at not in seen:  # a cycle cannot come from the kernel; never loop on a forged one
            seen.add(at)
            limits.append((at, limit))
            fork = forks.get(at)
            if fork is None or at == MAIN_BRANCH:
                break
            at, limit = fork[0], min(limit, fork[1])
        return cls(branch, tuple(limits))

    def contains(self, branch: int, seq: int) -> bool:
        if branch == self.branch:  # the hot case: one comparison
            return True
        for b, limit in self.limits:
            if b == branch:
                return seq <= limit
        return False

    def limit_of(self, branch: int) -> int | None:
        return next((limit for b, limit in self.limits if b == branch), None)

    def literal(self, alias: str = "") -> str:
        """The WHERE term of :meth:`sql` with its integers inlined (views and fixed statements)."""
        terms = [
            f"{alias}branch = {int(b)}"
            if limit == UNBOUNDED
            else f"({alias}branch = {int(b)} AND {alias}seq <= {int(limit)})"
            for b, limit in self.limits
        ]
        return "(" + " OR ".join(terms) + ")"

    def sql(self) -> tuple[str, list[int]]:
        """A WHERE term selecting this lineage's events (columns ``branch`` and ``seq``)."""
        terms, params = [], []
        for b, limit in self.limits:
            if limit == UNBOUNDED:
                terms.append("branch = ?")
                params.append(b)
            else:
                terms.append("(branch = ? AND seq <= ?)")
                params.extend((b, limit))
        return "(" + " OR ".join(terms) + ")", params
