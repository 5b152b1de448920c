"""DMARC aggregate reports (DMARC_SEND_REPORTS): one day's reports sent by rspamadm
(:mod:`roost.dmarcreport.sender`), once a day by a supervised process
(:mod:`roost.dmarcreport.daily`, ``python -m roost.dmarcreport``) or by hand
(``roost dmarc-report``). What is due when is decided in :mod:`roost.core.dmarcreport`.
"""

from roost.dmarcreport.sender import DayResult, DmarcReportError, send_day

__all__ = ["DayResult", "DmarcReportError", "send_day"]
