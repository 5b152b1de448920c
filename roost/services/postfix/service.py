"""Postfix: the MTA behind nginx's port 25 and the submission server on 465/587.

Roost runs a private Postfix instance (``postfix -c ROOT/etc/postfix start-fg``) whose
queue, state and configuration all live under ROOT, so several stacks share one host and
the system's own /etc/postfix is never used for mail. Domains, mailboxes, aliases, relays
and sender ownership are never written into Postfix's files: every lookup is a socketmap
query to the gate, so nothing here can drift from the store.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import tls
from roost.layout import (
    POSTFIX_FRONT_PORT,
    POSTFIX_SIEVE_PORT,
    PROXIED_SUBMISSION_PORTS,
    WEBMAIL_SASL_SERVICE,
    WEBMAIL_SUBMISSION_PORT,
    Layout,
)
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)
from roost.services.postfix.tools import (
    POSTFIX,
    POSTQUEUE,
    apply_override_files,
    check_instance,
    compile_map,
    default_config_directory,
    postconf,
    settle,
    write_private,
)

__all__ = ["PostfixService", "system_prerequisites"]

_TEMPLATES = template_environment(__file__)

# Lookup tables main.cf always names; an override of the same name replaces the empty one.
BUILTIN_MAPS = ("transport.map", "tls_policy.map")
#: Files rendered from templates/<name>.j2 at every start.
RENDERED = (
    "main.cf",
    "master.cf",
    "outclean_header_checks.pcre",
    "srs_senders.pcre",
    "srs_recipients.pcre",
)
#: Debian's bundle of the public CAs (ca-certificates), which MTA-STS's "secure" checks.
CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")
#: The chroot's resolv.conf, which its etc/resolv.conf links to (_write_chroot_resolver).
CHROOT_RESOLV_CONF = "roost-resolv.conf"


def _postfix_network(network: str) -> str:
    """Postfix writes IPv6 networks as ``[2001:db8::]/32`` (postconf(5) mynetworks)."""
    net = ipaddress.ip_network(network, strict=False)
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


def _host_port(address: str, port: int) -> str:
    """A master.cf listener ``host:port``; IPv6 hosts go in brackets (master(5))."""
    if ipaddress.ip_address(address).version == 6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def _route_source(address: str) -> str:
    """The source address the kernel picks for a connection to ``address``.

    nginx cannot choose the source of its proxy connection, and for any loopback
    destination Linux answers from the loopback route's preferred source (127.0.0.1 on
    a stock host), not from the destination itself. Connecting a UDP socket sends
    nothing and asks the routing table the same question.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((address, POSTFIX_FRONT_PORT))
        return str(probe.getsockname()[0])


@dataclass
class PostfixService(Service):
    """Renders main.cf/master.cf, applies overrides, checks the instance with Postfix."""

    name: str = field(init=False, default="postfix")
    # The gate answers every table lookup; Dovecot takes LMTP deliveries and SASL; Rspamd
    # scans every message (until it answers, mail would only be deferred).
    # Unbound and the MTA-STS resolver answer the delivery agents' DNS and policy lookups.
    after: Sequence[str] = field(
        init=False, default=("gate", "dovecot", "rspamd", "unbound", "mtasts")
    )

    @property
    def data_directory(self) -> Path:
        """Postfix's own state (TLS session caches, verify database)."""
        return self.layout.data / "postfix"

    # -- values the templates use ---------------------------------------------------------
    def submission_ports(self) -> list[int]:
        return [port for port in (465, 587) if self.layout.settings.port_enabled(port)]

    def _inet_interfaces(self) -> str:
        """``all`` for a wildcard BIND address (every address is ours), else loopback."""
        if any(ipaddress.ip_address(a).is_unspecified for a in self.layout.listen_addresses()):
            return "all"
        return "loopback-only"

    def _proxy_interfaces(self) -> str:
        """The BIND addresses: nginx receives mail there on Postfix's behalf."""
        addresses = self.layout.listen_addresses()
        return ", ".join(a for a in addresses if not ipaddress.ip_address(a).is_unspecified)

    def _inet_protocols(self) -> str:
        # IPv6 (listening and delivering) only when the stack is given an IPv6 address,
        # as Mailu enables IPv6 only with SUBNET6.
        return "ipv4, ipv6" if self.layout.settings.BIND_ADDRESS6 else "ipv4"

    def _submission_hosts(self) -> list[str | None]:
        """Hosts for the 465/587 listeners; None (no host) stands for every interface.

        A wildcard BIND address becomes a port-only master.cf service, which listens on
        all inet_interfaces (master(5)); listing 0.0.0.0 and :: separately would make
        the second bind collide with the first.
        """
        addresses = self.layout.listen_addresses()
        if any(ipaddress.ip_address(a).is_unspecified for a in addresses):
            return [None]
        return list(addresses)

    def _submission_listeners(self) -> list[dict[str, Any]]:
        settings = self.layout.settings
        listeners = []
        for port in self.submission_ports():
            if port == 465:
                comment = "Submission with implicit TLS (RFC 8314)."
                syslog_name = "submissions"
                options = ["smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt"]
            elif settings.tls:
                comment = "Submission; STARTTLS is required before AUTH and MAIL."
                syslog_name = "submission"
                options = ["smtpd_tls_security_level=encrypt", "smtpd_tls_auth_only=yes"]
            else:
                comment = "Submission without TLS (TLS_FLAVOR=notls): AUTH in the clear."
                syslog_name = "submission"
                options = ["smtpd_tls_security_level=none", "smtpd_tls_auth_only=no"]
            if settings.proxy_protocol(port):
                # nginx's stream proxy holds the public port and passes each connection on
                # with a PROXY header naming the client; it alone reaches this address.
                internal = PROXIED_SUBMISSION_PORTS[port]
                listeners.append(
                    {
                        "address": _host_port(self.layout.internal_address, internal),
                        "comment": f"{comment} Behind nginx's port {port} (PROXY_PROTOCOL).",
                        "syslog_name": syslog_name,
                        "options": [*options, "smtpd_upstream_proxy_protocol=haproxy"],
                    }
                )
                continue
            for address in self._submission_hosts():
                listeners.append(
                    {
                        "address": _host_port(address, port) if address else str(port),
                        "comment": comment,
                        "syslog_name": syslog_name,
                        "options": options,
                    }
                )
        if settings.webmail_path:
            # Roundcube's (WEBMAIL) on the internal address: Postfix names the SASL service
            # WEBMAIL_SASL_SERVICE to Dovecot, and the gate takes only the webmail's single
            # sign-on tokens there (postconf(5) smtpd_sasl_service).
            listeners.append(
                {
                    "address": _host_port(self.layout.internal_address, WEBMAIL_SUBMISSION_PORT),
                    "comment": "Submission for the webmail alone (single sign-on tokens).",
                    "syslog_name": "webmail",
                    "options": [
                        "smtpd_tls_security_level=none",
                        "smtpd_tls_auth_only=no",
                        f"smtpd_sasl_service={WEBMAIL_SASL_SERVICE}",
                    ],
                }
            )
        return listeners

    def context(self) -> dict[str, Any]:
        """Everything main.cf and master.cf are rendered from."""
        settings = self.layout.settings
        layout = self.layout
        internal = layout.internal_address
        level = settings.OUTBOUND_TLS_LEVEL
        pair = tls.served_pair(layout)
        return {
            "overrides": self.overrides,
            "queue_directory": layout.queue,
            "data_directory": self.data_directory,
            "hostname": settings.hostname,
            "domain": settings.DOMAIN,
            # SRS rewrites senders to this domain (roost/core/srs.py, the gate's sendermap).
            "srs_domain": settings.DOMAIN,
            "srs_domain_pattern": re.escape(settings.DOMAIN),
            "inet_interfaces": self._inet_interfaces(),
            "proxy_interfaces": self._proxy_interfaces(),
            "inet_protocols": self._inet_protocols(),
            "mynetworks": ", ".join(_postfix_network(n) for n in settings.mynetworks),
            "xclient_hosts": ", ".join(dict.fromkeys([internal, _route_source(internal)])),
            "gate": f"socketmap:unix:{layout.gate_socketmap}",
            "lmtp_socket": layout.lmtp_socket,
            "rspamd_milter": layout.rspamd_milter_socket,
            "dovecot_auth_socket": layout.dovecot_auth_socket,
            "recipient_delimiter": settings.RECIPIENT_DELIMITER,
            "message_size_limit": settings.MESSAGE_SIZE_LIMIT,
            "reject_unlisted_recipient": "yes" if settings.REJECT_UNLISTED_RECIPIENT else "no",
            "tls": settings.tls,
            "tls_excluded_ciphers": tls.policy.POSTFIX_EXCLUDED,
            # The pair tls checked before any daemon starts; None under notls.
            "cert_file": pair.cert_file if pair else None,
            "key_file": pair.key_file if pair else None,
            "relayhost": settings.RELAYHOST,
            "relay_auth": bool(settings.RELAYUSER),
            "outbound_tls_level": level,
            "dane": level in ("dane", "dane-only"),
            "dane_insecure_mx_policy": "dane" if settings.DEFER_ON_TLS_ERROR else "may",
            # The delivery agents run chrooted when their resolv.conf is Roost's (render).
            "smtp_chroot": "y" if layout.validating_resolver else "n",
            "mta_sts_socket": layout.mta_sts_socket,
            "ca_file": CA_FILE,
            "front_listener": _host_port(internal, POSTFIX_FRONT_PORT),
            # Mail Dovecot sends (Sieve redirect, notify, vacation): its own policy.
            "sieve_listener": _host_port(internal, POSTFIX_SIEVE_PORT),
            "submission_listeners": self._submission_listeners(),
        }

    # -- Service interface ------------------------------------------------------------------
    def render(self) -> None:
        """Write the instance, apply overrides, and let Postfix itself check the result.

        The configuration directory is rebuilt from nothing each time, so an override the
        user removed does not linger as a stale compiled map.
        """
        self._check_paths()
        context = self.context()
        if self.etc.exists():
            shutil.rmtree(self.etc)
        self.etc.mkdir(parents=True, mode=0o755)
        self.layout.queue.mkdir(parents=True, exist_ok=True)
        self.data_directory.parent.mkdir(parents=True, exist_ok=True)
        for name in RENDERED:
            text = _TEMPLATES.get_template(f"{name}.j2").render(context)
            write_file(self.etc / name, text)
        settle(self.etc)
        for name in BUILTIN_MAPS:
            if not (self.overrides / name).is_file():
                write_file(self.etc / name, "")
                compile_map(self.etc, self.etc / name, shown_as=self.etc / name)
        self._write_relay_credentials()
        self._write_chroot_resolver()
        override_names = apply_override_files(self.etc, self.overrides)
        check_instance(self.etc, override_names)

    def command(self) -> list[str]:
        # start-fg keeps master(8) attached to our stdout so maillog_file=/dev/stdout works.
        return [POSTFIX, "-c", str(self.etc), "start-fg"]

    def refresh_command(self) -> list[str]:
        """``postqueue -f``: deliver what was deferred while LMTP or the gate was away."""
        return [POSTQUEUE, "-c", str(self.etc), "-f"]

    def reload_command(self) -> list[str]:
        """``postfix reload``: master(8) re-reads main.cf, and smtpd processes started from
        then on load the new certificate (postfix(1))."""
        return [POSTFIX, "-c", str(self.etc), "reload"]

    def reload_on(self) -> frozenset[str]:
        return frozenset({tls.CERTIFICATE_CHANGED}) if self.layout.settings.tls else frozenset()

    def stop_command(self) -> list[str]:
        """``postfix stop``: SIGTERM to start-fg reaches only its shell, not master(8).

        ``postfix start-fg`` runs postfix-script, which starts ``master -s`` as a child
        that makes itself a session leader; a signal to the script (or to its process
        group) leaves master running. ``postfix stop`` signals master by its pid file.
        """
        return [POSTFIX, "-c", str(self.etc), "stop"]

    def readiness(self) -> Readiness:
        return Readiness(tcp=((self.layout.internal_address, POSTFIX_FRONT_PORT),))

    # -- helpers ------------------------------------------------------------------------------
    def _check_paths(self) -> None:
        """Postfix splits parameter values on whitespace and commas: refuse such a ROOT."""
        if re.search(r"[\s,]", str(self.layout.root)):
            raise ServiceConfigError(
                f"ROOT={self.layout.root}: Postfix cannot use a path with spaces or commas; "
                "choose a ROOT without them"
            )

    def _write_chroot_resolver(self) -> None:
        """The resolv.conf of the chrooted delivery agents: the validating resolver.

        Postfix trusts a TLSA record only when the resolver set the AD bit, which glibc
        (2.31 and later) passes on only for ``options trust-ad`` (resolv.conf(5)) or a
        program that asks: Postfix 3.7 asks when it looks up with DNSSEC (dns_lookup(3)
        RES_TRUSTAD), the line says so for every version. The file lives in
        the queue directory, so the host's /etc/resolv.conf is never changed and nothing
        on the host can swap it under Postfix. ``etc/resolv.conf`` is a link to it:
        postfix-script compares each regular file under the chroot's etc with the host's
        and would warn at every start that they differ, which here is the point.
        """
        resolver = self.layout.validating_resolver
        chroot_etc = self.layout.queue / "etc"
        if resolver is None:
            # Not chrooted: the host's resolver. A stale copy would only mislead.
            shutil.rmtree(chroot_etc, ignore_errors=True)
            return
        chroot_etc.mkdir(mode=0o755, exist_ok=True)
        write_file(chroot_etc / CHROOT_RESOLV_CONF, f"nameserver {resolver}\noptions trust-ad\n")
        link = chroot_etc / "resolv.conf"
        if not link.is_symlink() or os.readlink(link) != CHROOT_RESOLV_CONF:
            link.unlink(missing_ok=True)
            link.symlink_to(CHROOT_RESOLV_CONF)

    def _write_relay_credentials(self) -> None:
        """RELAYUSER/RELAYPASSWORD as an lmdb map keyed by RELAYHOST (SASL_README).

        Only the compiled map is kept, readable by root alone: smtp(8) opens it before
        dropping privileges.
        """
        settings = self.layout.settings
        if not settings.RELAYUSER:
            return
        source = self.etc / "sasl_passwd"
        line = f"{settings.RELAYHOST} {settings.RELAYUSER}:{settings.RELAYPASSWORD}\n"
        write_private(source, line.encode("utf-8"), 0o600)
        compile_map(self.etc, source, shown_as=source, mode=0o600)


def system_prerequisites(
    layout: Layout, default_config_dir: Path | None = None, *, remove: bool = False
) -> str | None:
    """List this stack's config dir in the system main.cf's alternate_config_directories
    (or, with ``remove``, take it out again, as the uninstaller does).

    postqueue(1) and postdrop(1) are set-gid programs: they accept ``-c`` or MAIL_CONFIG
    for a directory other than the default one only when the default main.cf lists it
    (postconf(5) alternate_config_directories), so ``mailq``/``sendmail`` for this
    instance need it for non-root callers. The installer calls this once; it returns a
    line for the installer to show when it changed the system file, else None.
    """
    directory = default_config_dir or default_config_directory()
    ours = str(layout.service_etc("postfix"))
    current = postconf(directory, ["-h", "alternate_config_directories"]).stdout.strip()
    entries = [e for e in re.split(r"[\s,]+", current) if e]
    if (ours in entries) != remove:
        return None
    if remove:
        entries.remove(ours)
    else:
        entries.append(ours)
    if entries:
        postconf(directory, ["-e", f"alternate_config_directories = {', '.join(entries)}"])
    else:
        postconf(directory, ["-X", "alternate_config_directories"])
    change = f"removed {ours} from" if remove else f"added {ours} to"
    return f"{directory}/main.cf: {change} alternate_config_directories"
