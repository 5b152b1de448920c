"""The doctor's I/O: DNS through dnspython, the MTA-STS policy over HTTPS, TCP ports and the
certificate files, each bounded in time and never raising for what the network does.

What it sees goes to :mod:`roost.doctor.checks` as :mod:`roost.doctor.observed` values.
"""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
import threading
from typing import Any

import dns.reversename
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from roost import dnscheck, tls
from roost.core import mtasts
from roost.doctor.observed import FOUND, MISSING, UNKNOWN, Certificate, Looked, Policy, Port
from roost.layout import Layout
from roost.tls.chains import system_cas
from roost.tls.check import covers

__all__ = ["Probe", "read_certificate"]

#: Seconds for one DNS query, one TCP connection, one HTTPS fetch of a policy.
QUERY_TIMEOUT = 2.0
CONNECT_TIMEOUT = 3.0
FETCH_TIMEOUT = 5.0
#: RFC 8461 §3.3: senders may refuse a policy larger than 64 KiB.
POLICY_LIMIT = 64 * 1024


def _name(value: Any) -> str:
    return str(value.to_text()).lower().rstrip(".")


def _value(rdata: Any, rtype: str) -> Any:
    if rtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rtype == "MX":
        return (int(rdata.preference), _name(rdata.exchange))
    if rtype in ("A", "AAAA"):
        return str(rdata.address)
    if rtype in ("PTR", "CNAME"):
        return _name(rdata.target)
    if rtype == "TLSA":
        return (int(rdata.usage), int(rdata.selector), int(rdata.mtype), rdata.cert.hex())
    return rdata.to_text()


class Probe:
    """Looks things up for the checks; each DNS question is asked once per run.

    Raises dns.exception.DNSException, OSError or ValueError when no resolver can be set
    up (no usable /etc/resolv.conf).
    """

    def __init__(self, server: dnscheck.ResolverAddress | None = None) -> None:
        self.resolver = dnscheck.make_resolver(server, QUERY_TIMEOUT)
        self._answers: dict[tuple[str, str], Looked] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str, rtype: str) -> Looked:
        key = (name.lower().rstrip(".") + ".", rtype)
        with self._lock:
            known = self._answers.get(key)
        if known is not None:
            return known
        answer = dnscheck.query(self.resolver, key[0], rtype)
        state = {dnscheck.LIVE: FOUND, dnscheck.MISSING: MISSING}.get(answer.state, UNKNOWN)
        looked = Looked(
            state,
            tuple(_value(r, rtype) for r in answer.rdatas if r.rdtype.name == rtype),
            answer.reason,
        )
        if state == FOUND and not looked.values:  # only a CNAME, whose target has none
            looked = Looked(MISSING, (), f"no {rtype} record")
        with self._lock:
            self._answers[key] = looked
        return looked

    def addresses(self, host: str) -> list[str]:
        return [str(v) for rtype in ("A", "AAAA") for v in self.lookup(host, rtype).values]

    def reverse(self, address: str) -> Looked:
        return self.lookup(dns.reversename.from_address(address).to_text(), "PTR")

    def fetch_policy(self, domain: str) -> Policy:
        """GET the policy over HTTPS (RFC 8461 §3.3): the certificate must be valid for
        the policy host by the system's CAs; redirects are not followed."""
        host = mtasts.policy_host(domain)
        url = f"https://{host}{mtasts.POLICY_PATH}"
        addresses = self.addresses(host)
        if not addresses:
            reason = self.lookup(host, "A").reason or "no address"
            return Policy(url, error=f"{host} has no address ({reason})")
        error = ""
        for address in addresses:
            connection = _PinnedHTTPS(host, address, FETCH_TIMEOUT)
            try:
                connection.request("GET", mtasts.POLICY_PATH, headers={"Host": host})
                response = connection.getresponse()
                body = response.read(POLICY_LIMIT + 1)
                if len(body) > POLICY_LIMIT:
                    return Policy(url, error="the policy is larger than 64 KiB")
                return Policy(
                    url,
                    status=response.status,
                    content_type=response.getheader("Content-Type", ""),
                    body=body.decode("utf-8", "replace"),
                )
            except ssl.SSLCertVerificationError as exc:
                error = f"certificate not valid for {host}: {exc.verify_message}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{address}: {exc or type(exc).__name__}"
            finally:
                connection.close()
        return Policy(url, error=error)

    def port(self, address: str, port: int) -> Port:
        try:
            with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT):
                return Port(address, port, True)
        except TimeoutError:
            return Port(address, port, False, f"no answer in {CONNECT_TIMEOUT:g} s")
        except OSError as exc:
            return Port(address, port, False, exc.strerror or str(exc))


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``host`` at an address the doctor's own resolver found, checking the
    certificate against ``host`` with the system's CAs."""

    def __init__(self, host: str, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, 443, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), timeout=self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def read_certificate(layout: Layout, now: datetime.datetime) -> Certificate | None:
    """The served pair from its files (None under TLS_FLAVOR=notls): tls's own check, and
    whether the system's CAs vouch for it."""
    pair = tls.served_pair(layout)
    if pair is None:
        return None
    try:
        checked = tls.check_pair(pair.cert_file, pair.key_file, layout.settings.HOSTNAMES, now)
        chain = x509.load_pem_x509_certificates(pair.cert_file.read_bytes())
        # TLSA records are matched against what port 25 serves (with its root, for DANE).
        mx_chain = x509.load_pem_x509_certificates(pair.mx_cert_file.read_bytes())
    except (tls.TLSError, OSError, ValueError) as exc:
        return Certificate(problem=str(exc))
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    self_signed = leaf.issuer == leaf.subject
    trust_error = "self-signed" if self_signed else _trust_error(layout, checked.names, chain, now)
    return Certificate(
        names=checked.names,
        not_before=checked.not_before,
        not_after=checked.not_after,
        self_signed=self_signed,
        trust_error=trust_error,
        chain=tuple(c.public_bytes(serialization.Encoding.DER) for c in mx_chain),
        spkis=tuple(c.public_key().public_bytes(*spki) for c in mx_chain),
    )


def _trust_error(
    layout: Layout, names: tuple[str, ...], chain: list[x509.Certificate], now: datetime.datetime
) -> str:
    """Why the system's CAs do not vouch for the chain (RFC 5280 §6), or empty. The name
    checked is the first of HOSTNAMES the certificate covers, so a missing name is
    reported on its own, not as distrust."""
    cas = system_cas()
    if not cas:
        return "no system CA bundle to check against (install ca-certificates)"
    covered = [h for h in layout.settings.HOSTNAMES if covers(names, h)]
    name = covered[0] if covered else next((n.replace("*", "any", 1) for n in names), "")
    if not name:
        return "it names no host"
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(cas))
            .time(now)
            .build_server_verifier(x509.DNSName(name))
        )
        verifier.verify(chain[0], chain[1:])
    except (verification.VerificationError, ValueError) as exc:
        return str(exc) or "no chain to a trusted CA"
    return ""
