"""Client autoconfiguration: Thunderbird's config-v1.1.xml, Outlook's autodiscover (XML and
JSON) and Apple's configuration profile, each naming the ports that are actually on.

Mailu always advertises IMAP 993 and SMTP 465 whatever PORTS says; here each document
lists what listens (``settings.port_enabled``: PORTS, with 465/993/995 only under TLS),
best first as RFC 8314 §5.1 prefers: implicit TLS (993, 995, 465), then STARTTLS (143,
110, 587), which Roost requires before a login whenever TLS is on; under
TLS_FLAVOR=notls the plain ports without encryption. The server is HOSTNAMES[0]. With
WEBDAV on, Thunderbird's document and Apple's profile also name the CalDAV and CardDAV
server (``dav_url``); Outlook's autodiscover has no place for it.

Formats:
- Thunderbird: https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat
  (every server is an alternative, the first is preferred).
- Outlook: "POX" autodiscover, [MS-OXDSCLI] (request and response schema 2006/2006a;
  ``Encryption`` SSL for implicit TLS, TLS for STARTTLS), and the JSON service Outlook's
  newer clients ask first, [MS-OXDISCO], which only points at the XML one.
- Apple: Configuration Profile Reference, ``com.apple.mail.managed`` payload.

Input is read defensively: the autodiscover request is parsed by defusedxml with DTDs
refused (no entity expansion), a body over 64 KiB is refused, and anything malformed is a
400 with a message, never a 500.
"""

from __future__ import annotations

import json
import plistlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from fastapi import APIRouter, Request
from fastapi.responses import Response

from roost.core.address import AddressError, parse_address
from roost.core.dnsrecords import services
from roost.settings import Settings

__all__ = ["MAX_BODY", "ClientServer", "client_servers", "dav_url", "router"]

#: Largest autodiscover request read (bytes); a real one is a few hundred.
MAX_BODY = 64 * 1024

REQUEST_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
AUTODISCOVER = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
APPLE_PROFILE = "application/x-apple-aspen-config"


@dataclass(frozen=True, slots=True)
class ClientServer:
    """One server a mail client can use: protocol (imap, pop3, smtp), port and security."""

    protocol: str
    port: int
    security: str  # "SSL" (implicit TLS), "STARTTLS" or "plain"


def client_servers(settings: Settings) -> list[ClientServer]:
    """The enabled IMAP, POP3 and submission servers, preferred first within each protocol."""
    out = []
    for service in services(settings):
        if service.protocol not in ("imap", "pop3", "smtp"):
            continue
        # Roost requires STARTTLS before a login on 143/110/587 whenever TLS is on.
        plain = "STARTTLS" if settings.tls else "plain"
        security = "SSL" if service.implicit_tls else plain
        out.append(ClientServer(service.protocol, service.port, security))
    order = {"SSL": 0, "STARTTLS": 1, "plain": 2}
    return sorted(
        out, key=lambda s: ("imap", "pop3", "smtp").index(s.protocol) * 3 + order[s.security]
    )


def _first(servers: list[ClientServer], protocol: str) -> ClientServer | None:
    return next((s for s in servers if s.protocol == protocol), None)


def _problem(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain")


def _xml(root: ET.Element, media_type: str = "text/xml") -> Response:
    body = ET.tostring(root, encoding="unicode", xml_declaration=False)
    text = f'<?xml version="1.0" encoding="utf-8"?>\n{body}\r\n'
    return Response(text, media_type=media_type)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _web_base(settings: Settings) -> str:
    return f"{'https' if settings.tls else 'http'}://{settings.hostname}"


def dav_url(settings: Settings) -> str | None:
    """The CalDAV and CardDAV server's URL (WEBDAV=radicale; one URL serves both, and a
    client finds the user's collections below it, RFC 6764), or None."""
    if not settings.webdav_path:
        return None
    return f"{_web_base(settings)}{settings.webdav_path}/"


# -- Thunderbird ------------------------------------------------------------------------------


def thunderbird_config(settings: Settings) -> ET.Element | None:
    """config-v1.1.xml; None when no incoming server is enabled."""
    servers = client_servers(settings)
    incoming = [s for s in servers if s.protocol in ("imap", "pop3")]
    if not incoming:
        return None
    root = ET.Element("clientConfig", version="1.1")
    provider = _sub(root, "emailProvider", id=settings.hostname)
    _sub(provider, "domain", "%EMAILDOMAIN%")
    _sub(provider, "displayName", settings.SITENAME or "Email")
    _sub(provider, "displayShortName", settings.SITENAME or "Email")
    for server in servers:
        tag = "outgoingServer" if server.protocol == "smtp" else "incomingServer"
        element = _sub(provider, tag, type=server.protocol)
        _sub(element, "hostname", settings.hostname)
        _sub(element, "port", str(server.port))
        _sub(element, "socketType", server.security)
        _sub(element, "username", "%EMAILADDRESS%")
        _sub(element, "authentication", "password-cleartext")
        if server.protocol == "smtp":
            _sub(element, "addThisServer", "true")
            _sub(element, "useGlobalPreferredServer", "false")
    if settings.WEB_ADMIN:
        docs = _sub(
            provider, "documentation", url=f"{_web_base(settings)}{settings.WEB_ADMIN}/client"
        )
        _sub(docs, "descr", "Configure your email client", lang="en")
    dav = dav_url(settings)
    if dav is not None:
        # Siblings of emailProvider, as Thunderbird reads them (102 and later).
        for tag, kind in (("addressBook", "carddav"), ("calendar", "caldav")):
            element = _sub(root, tag, type=kind)
            _sub(element, "username", "%EMAILADDRESS%")
            _sub(element, "authentication", "http-basic")
            _sub(element, "serverURL", dav)
    return root


# -- Outlook ----------------------------------------------------------------------------------


class BadRequest(ValueError):
    """A request this module will not answer; the message says why (a 400)."""


def parse_autodiscover_request(body: bytes) -> tuple[str, str]:
    """(email address, response schema) from a POX autodiscover request; raises BadRequest."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise BadRequest(f"the request is not well-formed XML ({type(exc).__name__})") from None
    if _local(root.tag) != "Autodiscover":
        raise BadRequest("the request is not an Autodiscover document")
    email = schema = None
    for element in root.iter():
        name = _local(element.tag)
        if name == "EMailAddress" and email is None:
            email = (element.text or "").strip()
        elif name == "AcceptableResponseSchema" and schema is None:
            schema = (element.text or "").strip()
    if not email:
        raise BadRequest("the request names no EMailAddress")
    try:
        address = str(parse_address(email))
    except AddressError as exc:
        raise BadRequest(f"EMailAddress: {exc}") from None
    return address, schema or RESPONSE_SCHEMA


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def outlook_response(settings: Settings, address: str | None) -> ET.Element:
    """The POX response: one Protocol per type, the preferred enabled port of each."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER)
    response = _sub(root, "Response", xmlns=RESPONSE_SCHEMA)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    servers = client_servers(settings)
    for protocol, kind in (("imap", "IMAP"), ("pop3", "POP3"), ("smtp", "SMTP")):
        server = _first(servers, protocol)
        if server is None:
            continue
        element = _sub(account, "Protocol")
        _sub(element, "Type", kind)
        _sub(element, "Server", settings.hostname)
        _sub(element, "Port", str(server.port))
        _sub(element, "DomainRequired", "on")
        if address:
            _sub(element, "LoginName", address)
        _sub(element, "SPA", "off")
        _sub(element, "SSL", "off" if server.security == "plain" else "on")
        _sub(element, "Encryption", {"SSL": "SSL", "STARTTLS": "TLS"}.get(server.security, "None"))
        _sub(element, "AuthRequired", "on")
    return root


def outlook_error(code: str, message: str) -> ET.Element:
    """[MS-OXDSCLI] 2.2.4.2.1.1: an Error element, e.g. 601 for a schema not provided."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER)
    response = _sub(root, "Response")
    error = _sub(response, "Error", Time="00:00:00", Id="0")
    _sub(error, "ErrorCode", code)
    _sub(error, "Message", message)
    _sub(error, "DebugData")
    return root


async def _read_body(request: Request) -> bytes:
    """The request body, at most MAX_BODY bytes; raises BadRequest beyond."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadRequest(f"the request is larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(f"the request is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# -- Apple ------------------------------------------------------------------------------------


def apple_profile(settings: Settings, address: str) -> bytes | None:
    """A configuration profile with one mail account; None when no incoming server is on."""
    servers = client_servers(settings)
    incoming = _first(servers, "imap") or _first(servers, "pop3")
    if incoming is None:
        return None
    outgoing = _first(servers, "smtp")
    host = settings.hostname
    seed = f"{host}/{address}"
    account: dict[str, object] = {
        "EmailAccountDescription": settings.SITENAME or host,
        "EmailAccountName": address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": incoming.security != "plain",
        "IncomingMailServerUsername": address,
        "PayloadDescription": f"Mail account {address}",
        "PayloadDisplayName": address or host,
        "PayloadIdentifier": f"{host}.email.{uuid.uuid5(uuid.NAMESPACE_URL, seed)}",
        "PayloadType": "com.apple.mail.managed",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, seed + "/account")).upper(),
        "PayloadVersion": 1,
        "PreventAppSheet": False,
        "PreventMove": False,
        "SMIMEEnabled": False,
    }
    if outgoing is not None:
        account.update(
            {
                "OutgoingMailServerAuthentication": "EmailAuthPassword",
                "OutgoingMailServerHostName": host,
                "OutgoingMailServerPortNumber": outgoing.port,
                "OutgoingMailServerUseSSL": outgoing.security != "plain",
                "OutgoingMailServerUsername": address,
                "OutgoingPasswordSameAsIncomingPassword": True,
            }
        )
    payloads = [account, *_dav_payloads(settings, address, seed)]
    profile = {
        "PayloadContent": payloads,
        "PayloadDescription": f"{host}: e-mail account configuration",
        "PayloadDisplayName": f"{settings.SITENAME or host} mail",
        "PayloadIdentifier": f"{host}.mobileconfig.{uuid.uuid5(uuid.NAMESPACE_URL, seed)}",
        "PayloadOrganization": settings.SITENAME or host,
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, seed + "/profile")).upper(),
        "PayloadVersion": 1,
    }
    return plistlib.dumps(profile, sort_keys=True)


def _dav_payloads(settings: Settings, address: str, seed: str) -> list[dict[str, object]]:
    """Calendar and Contacts accounts (``com.apple.caldav.account`` and
    ``com.apple.carddav.account`` payloads) when WEBDAV is on; the principal URL is the
    user's own collection, so the device needs no discovery."""
    dav = dav_url(settings)
    if dav is None:
        return []
    host = settings.hostname
    principal = f"{dav}{address}/" if address else dav
    out: list[dict[str, object]] = []
    for prefix, kind, what in (
        ("CalDAV", "caldav", "Calendar"),
        ("CardDAV", "carddav", "Contacts"),
    ):
        payload: dict[str, object] = {
            f"{prefix}AccountDescription": f"{settings.SITENAME or host} {what.lower()}",
            f"{prefix}HostName": host,
            f"{prefix}Port": 443 if settings.tls else 80,
            f"{prefix}PrincipalURL": principal,
            f"{prefix}UseSSL": settings.tls,
            "PayloadDescription": f"{what} account {address}".rstrip(),
            "PayloadDisplayName": f"{what} ({address or host})",
            "PayloadIdentifier": f"{host}.{kind}.{uuid.uuid5(uuid.NAMESPACE_URL, seed)}",
            "PayloadType": f"com.apple.{kind}.account",
            "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{kind}")).upper(),
            "PayloadVersion": 1,
        }
        if address:
            payload[f"{prefix}Username"] = address
        out.append(payload)
    return out


def _address_param(request: Request, *names: str) -> str:
    """An optional address from the query string ("" if absent); raises BadRequest."""
    for name in names:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise BadRequest(f"{name} is given more than once")
        if values and values[0].strip():
            try:
                return str(parse_address(values[0].strip()))
            except AddressError as exc:
                raise BadRequest(f"{name}: {exc}") from None
    return ""


# -- the routes -------------------------------------------------------------------------------


def router(settings: Settings) -> APIRouter:
    """The autoconfiguration routes at the absolute paths clients ask for."""
    routes = APIRouter(tags=["autoconfig"])
    none_enabled = "no incoming mail service (IMAP or POP3) is enabled in PORTS"

    async def thunderbird() -> Response:
        config = thunderbird_config(settings)
        return _problem(404, none_enabled) if config is None else _xml(config)

    for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
        routes.add_api_route(path, thunderbird, methods=["GET"], include_in_schema=False)

    async def outlook(request: Request) -> Response:
        address, schema = None, RESPONSE_SCHEMA
        if request.method == "POST":
            try:
                address, schema = parse_autodiscover_request(await _read_body(request))
            except BadRequest as exc:
                return _problem(400, str(exc))
        if schema != RESPONSE_SCHEMA:
            # Only Outlook's schema: no Exchange ActiveSync or web services here.
            return _xml(outlook_error("601", "Provider is not available"))
        return _xml(outlook_response(settings, address))

    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        routes.add_api_route(path, outlook, methods=["GET", "POST"], include_in_schema=False)

    async def outlook_json(request: Request) -> Response:
        protocol = request.query_params.get("Protocol", "AutodiscoverV1")
        if protocol.lower() != "autodiscoverv1":
            body = {"ErrorCode": "ProtocolNotSupported", "ErrorMessage": "only AutodiscoverV1"}
            return Response(json.dumps(body), status_code=404, media_type="application/json")
        url = f"{_web_base(settings)}/autodiscover/autodiscover.xml"
        body = {"Protocol": "AutodiscoverV1", "Url": url}
        return Response(json.dumps(body), media_type="application/json")

    for base in ("/autodiscover/autodiscover.json", "/Autodiscover/Autodiscover.json"):
        for path in (base, base + "/v1.0/{address}"):
            routes.add_api_route(path, outlook_json, methods=["GET"], include_in_schema=False)

    async def apple(request: Request) -> Response:
        try:
            address = _address_param(request, "emailaddress", "email")
        except BadRequest as exc:
            return _problem(400, str(exc))
        profile = apple_profile(settings, address)
        if profile is None:
            return _problem(404, none_enabled)
        name = f"{settings.hostname}.mobileconfig"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(profile, media_type=APPLE_PROFILE, headers=headers)

    for path in ("/apple", "/apple.mobileconfig", "/mobileconfig"):
        routes.add_api_route(path, apple, methods=["GET"], include_in_schema=False)
    return routes
