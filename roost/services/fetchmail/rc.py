"""fetchmail's run control text for one fetched account, and what its output means.

Pure: the fetcher (roost.fetcher) gives each account's settings and gets back the text it
writes to fetchmail's standard input (``fetchmail -f -``), so the remote password is in
no file and no argument list.

Quoting (fetchmail(1), "THE RUN-CONTROL FILE"): a quoted string may hold any character
through the escapes ``\\xhh`` (hex), and fetchmail reads a string's escapes before it looks
at its content. Every string that comes from a user (server, user name, password, folder
names) is written as a quoted string with *every* byte of its UTF-8 form escaped, so no
quote, backslash, line break or keyword in it can end the string or start an option.
A NUL cannot be escaped (fetchmail's strings end there) and is refused.

Options, as Mailu's fetchmail loop writes them, but TLS always: an account with ``tls``
connects with implicit TLS (RFC 8314); one without it must upgrade with STARTTLS
(``sslproto "TLS1.2+"`` without ``ssl``: fetchmail then refuses a server that does not
offer it), and both check the server's certificate against the system's authorities
(``sslcertck``), so a password never crosses the network in the clear. ``antispam 501,
504, 550, 553, 554``: a message Roost refuses with one of these is not tried again.
``keep`` leaves the messages on the server (fetchmail then fetches only the new ones,
remembered by their UIDs in the account's ``--idfile``); otherwise ``fetchall`` takes every
message and deletes it. FETCHMAIL_OPTIONS comes last, so an administrator's option wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roost.core import imaputf7

__all__ = [
    "ANTISPAM",
    "SUCCESS",
    "Account",
    "Delivery",
    "RcError",
    "argv",
    "error_line",
    "quoted",
    "render",
]

#: SMTP replies that mean "refused for good": fetchmail discards (or keeps, with
#: ``keep``) such a message instead of trying it again at every run.
ANTISPAM = (501, 504, 550, 553, 554)
#: fetchmail's exit codes that are no failure: 0 mail fetched, 1 no (new) mail, 13 stopped
#: by a fetch limit an administrator set (the rest comes next round).
SUCCESS = (0, 1, 13)
#: What the other exit codes mean to a user (fetchmail(1), EXIT CODES); fetchmail's own
#: line follows, which names the account and often the server's words.
_MEANING = {
    2: "cannot reach the server",
    3: "the server refused the user name or password",
    4: "the server broke the protocol",
    7: "the server reported an error",
    9: "the mailbox is locked on the server; trying again at the next round",
    10: "the messages could not be delivered here; trying again at the next round",
    11: "the server's name is not found in DNS",
    14: "the server is busy; trying again at the next round",
}


class RcError(ValueError):
    """An account that cannot be written as fetchmail's run control (a NUL in a field)."""


@dataclass(frozen=True)
class Account:
    """One fetched account, as the fetcher read it from the store."""

    id: int
    protocol: str
    host: str
    port: int
    tls: bool
    username: str
    password: str
    keep: bool
    scan: bool
    invisible: bool
    folders: tuple[str, ...]
    #: the mailbox the messages go to (the user's address)
    recipient: str


@dataclass(frozen=True)
class Delivery:
    """Where fetched messages go: Dovecot's LMTP socket, or Postfix (to be scanned)."""

    lmtp_socket: Path
    smtp_address: str
    smtp_port: int


def quoted(value: str, what: str = "value") -> str:
    """``value`` as a run control quoted string, every byte escaped as ``\\xhh``."""
    if "\0" in value:
        raise RcError(f"the {what} holds a NUL character, which fetchmail cannot take")
    return '"' + "".join(f"\\x{byte:02x}" for byte in value.encode("utf-8")) + '"'


def _protocol(account: Account) -> str:
    if account.protocol not in ("imap", "pop3"):
        raise RcError(f"unknown protocol {account.protocol!r}: expected imap or pop3")
    return account.protocol.upper()


def render(account: Account, delivery: Delivery, extra_options: str = "") -> str:
    """The run control text that fetches ``account`` once."""
    lines = [
        f"poll {quoted(account.host, 'server name')} proto {_protocol(account)} "
        f"service {int(account.port)}",
        f"    user {quoted(account.username, 'user name')} there",
        f"    with password {quoted(account.password, 'password')}",
        f"    is {quoted(account.recipient, 'address')} here",
    ]
    if account.scan:
        # Through Postfix, whose milter (Rspamd) scans every message.
        host = f"{delivery.smtp_address}/{delivery.smtp_port}"
        lines.append(f"    smtphost {quoted(host, 'SMTP host')}")
    else:
        lines.append(f"    smtphost {quoted(str(delivery.lmtp_socket), 'LMTP socket')} lmtp")
    if account.protocol == "imap":
        names = [imaputf7.encode(name) for name in account.folders] or ["INBOX"]
        lines.append("    folder " + ", ".join(quoted(name, "folder name") for name in names))
    options = [
        "antispam " + ", ".join(str(code) for code in ANTISPAM),
        "ssl" if account.tls else 'sslproto "TLS1.2+"',
        "sslcertck",
        "keep" if account.keep else "fetchall",
    ]
    if extra_options.strip():
        options.append(extra_options.strip())
    lines.append("    options " + " ".join(options))
    return "\n".join(lines) + "\n"


def argv(fetchmail: str, home: Path, idfile: Path, invisible: bool) -> list[str]:
    """fetchmail's command line for one run: the run control from standard input, the
    account's own UID memory, logging to standard error (read by the fetcher)."""
    command = [
        fetchmail,
        "--fetchmailrc",
        "-",
        "--idfile",
        str(idfile),
        "--pidfile",
        str(home / "fetchmail.pid"),
        "--uidl",
        "--sslcertck",
        "--nosyslog",
    ]
    if invisible:
        # Mailu's "keep original metadata": no Received line of fetchmail's own.
        command.append("--invisible")
    return command


def error_line(returncode: int, output: Sequence[str]) -> str:
    """What the user is shown of one run: empty when it worked or there was no new mail,
    else what the exit code means and fetchmail's first line that is not a warning."""
    if returncode in SUCCESS:
        return ""
    said = ""
    for line in output:
        text = line.strip()
        if text.startswith("fetchmail: "):
            text = text[len("fetchmail: ") :]
        if text and not text.lower().startswith("warning"):
            said = text
            break
    meaning = _MEANING.get(returncode, f"fetchmail failed (exit code {returncode})")
    return f"{meaning}: {said}" if said else meaning
