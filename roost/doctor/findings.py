"""What ``roost doctor`` says: findings, grouped per domain and for the host, and the exit status.

A finding has a severity, one sentence on what is wrong (or right), and for a problem the
exact fix: a zone-file line to publish or a setting to change. The JSON form
(:meth:`Report.as_json`) is a stable structure for monitoring: ``version`` changes only
when a field changes meaning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ERROR",
    "OK",
    "SEVERITIES",
    "UNKNOWN",
    "WARNING",
    "Finding",
    "Group",
    "Report",
]

#: Mail is lost, refused or unprotected.
ERROR = "error"
#: Should be fixed; mail still flows.
WARNING = "warning"
#: The check could not be made (a DNS timeout, say): neither good nor bad.
UNKNOWN = "unknown"
OK = "ok"
SEVERITIES = (ERROR, WARNING, UNKNOWN, OK)

#: Exit statuses: 1 when any error, else 3 when a check could not be made (the monitoring
#: convention for "unknown"); 2 stays the CLI's status for bad usage.
EXIT_OK, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 3
JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict. ``check`` is a short stable name (``mx``, ``spf``...);
    ``fix`` the record line or setting that repairs it (empty when nothing to do);
    ``reference`` the standard the check follows."""

    check: str
    severity: str
    message: str
    fix: str = ""
    reference: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "reference": self.reference,
        }


@dataclass(frozen=True, slots=True)
class Group:
    """The findings about one domain (``kind`` ``domain``) or the mail host (``host``)."""

    name: str
    kind: str
    findings: tuple[Finding, ...]
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "note": self.note,
            "findings": [f.as_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Report:
    groups: tuple[Group, ...]
    notes: tuple[str, ...] = field(default=())

    def findings(self) -> Iterable[Finding]:
        for group in self.groups:
            yield from group.findings

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings():
            counts[finding.severity] += 1
        return counts

    @property
    def status(self) -> str:
        """The worst severity found: error, then unknown, then warning, else ok."""
        counts = self.counts()
        for severity in (ERROR, UNKNOWN, WARNING):
            if counts[severity]:
                return severity
        return OK

    @property
    def exit_status(self) -> int:
        return {ERROR: EXIT_ERROR, UNKNOWN: EXIT_UNKNOWN}.get(self.status, EXIT_OK)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "status": self.status,
            "counts": self.counts(),
            "groups": [g.as_json() for g in self.groups],
            "notes": list(self.notes),
        }

    def as_text(self) -> str:
        """Grouped per domain, one line a finding, its fix indented below."""
        lines: list[str] = []
        for group in self.groups:
            title = group.name if group.kind == "domain" else f"host {group.name}"
            lines.append(title + (f" ({group.note})" if group.note else ""))
            for finding in group.findings:
                lines.append(f"  {finding.severity:<8}{finding.check}: {finding.message}")
                if finding.fix:
                    fix_lines = finding.fix.splitlines()
                    lines.append(f"{'':10}fix: {fix_lines[0]}")
                    lines += [f"{'':15}{line}" for line in fix_lines[1:]]
            lines.append("")
        lines += [f"Note: {note}" for note in self.notes]
        counts = self.counts()
        lines.append(
            f"{counts[ERROR]} error(s), {counts[WARNING]} warning(s), "
            f"{counts[UNKNOWN]} not checked, {counts[OK]} ok"
        )
        return "\n".join(lines) + "\n"
