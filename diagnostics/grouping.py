"""Findings grouped by independent problem: each root cause with the consequences ranking tied to
it (evidence['likely_caused_by']), so one fault reads as one problem, not six warnings. The CLI and
the dashboard's advice cards both show these groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from .finding import Finding


@dataclass(frozen=True)
class Problem:
    """One independent problem: a root-cause finding and the findings it explains."""

    root: Finding
    consequences: tuple[Finding, ...] = ()

    @property
    def findings(self) -> tuple[Finding, ...]:
        return (self.root,) + self.consequences


def _root_of(f: Finding, by_rule: dict[str, Finding], order: dict[str, int], seen: frozenset = frozenset()) -> str:
    """The rule at the top of a finding's chain of likely causes (the earliest ranked one when a
    finding has several)."""
    causes = [c for c in (f.evidence.get("likely_caused_by") or []) if c in by_rule and c not in seen]
    if not causes:
        return f.rule
    first = min(causes, key=lambda c: order[c])
    return _root_of(by_rule[first], by_rule, order, seen | {f.rule})


def group(findings: list[Finding]) -> tuple[list[Problem], list[Finding]]:
    """(problems, notes): every warning or critical finding under the root cause it leads back to,
    roots in ranked order; info findings (notes about the run, not problems) apart, in order."""
    acting = [f for f in findings if f.rank >= 1]
    notes = [f for f in findings if f.rank < 1]
    by_rule = {f.rule: f for f in acting}
    order = {f.rule: i for i, f in enumerate(acting)}
    members: dict[str, list[Finding]] = {}
    for f in acting:
        members.setdefault(_root_of(f, by_rule, order), []).append(f)
    problems = []
    for f in acting:
        if f.rule in members:
            rest = tuple(x for x in members[f.rule] if x is not f)
            problems.append(Problem(f, rest))
    return problems, notes
