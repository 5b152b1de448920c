"""``roost doctor``: is each domain's DNS, the mail host and its certificate set up right?

- :mod:`roost.doctor.probe`: the I/O (dnspython, HTTPS, TCP, the certificate files),
  bounded in time;
- :mod:`roost.doctor.checks`: one pure function per check, each citing its RFC, judging
  what the probe saw (:mod:`roost.doctor.observed`); :mod:`roost.doctor.spf` evaluates SPF;
- :mod:`roost.doctor.diagnose`: runs every check side by side into a
  :class:`~roost.doctor.findings.Report`, shown as text or JSON.
"""

from roost.doctor.diagnose import DomainFacts, diagnose
from roost.doctor.findings import Finding, Group, Report
from roost.doctor.probe import Probe, read_certificate

__all__ = ["DomainFacts", "Finding", "Group", "Probe", "Report", "diagnose", "read_certificate"]
