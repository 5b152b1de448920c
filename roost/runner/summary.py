"""What ``roost up`` tells the user once everything answers: where to connect, who to be.

A first-time user's next question after starting a mail server is "which ports, which
host, which account": the summary answers it from the same settings the daemons use.
"""

from __future__ import annotations

from roost.layout import Layout
from roost.settings import Settings

#: public ports in the order a mail administrator reads them, with their protocol names
PROTOCOLS = (
    (25, "smtp"),
    (587, "submission"),
    (465, "submissions"),
    (143, "imap"),
    (993, "imaps"),
    (110, "pop3"),
    (995, "pop3s"),
    (4190, "sieve"),
    (80, "http"),
    (443, "https"),
)


def listening(settings: Settings) -> str:
    """``smtp 25, submissions 465, ...`` for the ports this stack serves."""
    return ", ".join(f"{name} {port}" for port, name in PROTOCOLS if settings.port_enabled(port))


def web_address(settings: Settings) -> str | None:
    """Where a browser reaches the admin pages, or None when nothing serves them."""
    if not settings.WEB_ADMIN:
        return None
    if settings.tls and settings.port_enabled(443):
        return f"https://{settings.hostname}{settings.WEB_ADMIN}"
    if not settings.tls and settings.port_enabled(80):
        return f"http://{settings.hostname}{settings.WEB_ADMIN}"
    return None


def summary_lines(settings: Settings) -> list[str]:
    layout = Layout(settings)
    addresses = " and ".join(layout.listen_addresses())
    lines = [f"ready on {addresses}: {listening(settings)}"]
    host = settings.hostname
    submission = [str(port) for port in (465, 587) if settings.port_enabled(port)]
    reading = [
        f"{protocol} {port}"
        for port, protocol in ((993, "IMAP"), (143, "IMAP"), (995, "POP3"), (110, "POP3"))
        if settings.port_enabled(port)
    ]
    clients = f"mail clients use server {host}"
    if reading:
        clients += " for " + ", ".join(reading)
    if submission:
        clients += " and SMTP " + "/".join(submission) + " with the full address as user name"
    lines.append(clients)
    if settings.INITIAL_ADMIN_ACCOUNT:
        admin = f"{settings.INITIAL_ADMIN_ACCOUNT}@{settings.INITIAL_ADMIN_DOMAIN}"
        lines.append(f"administrator account: {admin}")
    else:
        lines.append(
            "no administrator account configured: set INITIAL_ADMIN_ACCOUNT, "
            "INITIAL_ADMIN_DOMAIN and INITIAL_ADMIN_PW"
        )
    web = web_address(settings)
    if web:
        lines.append(f"web administration: {web} (sign in with the full address)")
    if not settings.tls:
        lines.append("TLS_FLAVOR=notls: passwords travel unencrypted; use it only for testing")
    return lines
