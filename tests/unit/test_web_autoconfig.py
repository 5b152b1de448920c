"""Client autoconfiguration (web.autoconfig) through FastAPI's TestClient on a minimal app."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from roost.settings import Settings, load_settings
from roost.web.autoconfig import MAX_BODY, RESPONSE_SCHEMA, router

OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def settings(**values: str) -> Settings:
    environ = {"DOMAIN": "example.com", "HOSTNAMES": "mail.example.com,mx.example.com"}
    environ.update(values)
    return load_settings(env_file=None, environ=environ)


def client(**values: str) -> TestClient:
    app = FastAPI()
    app.include_router(router(settings(**values)))
    return TestClient(app, raise_server_exceptions=False)


def request_xml(email: str, schema: str = RESPONSE_SCHEMA) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
        'requestschema/2006"><Request>'
        f"<EMailAddress>{email}</EMailAddress>"
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    )


# -- Thunderbird ------------------------------------------------------------------------------


def thunderbird_servers(c: TestClient, path: str = "/mail/config-v1.1.xml") -> list[tuple]:
    response = c.get(path, params={"emailaddress": "joe@example.com"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("\r\n")
    root = ET.fromstring(response.text)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "mail.example.com"
    assert provider.findtext("domain") == "%EMAILDOMAIN%"
    out = []
    for server in provider:
        if server.tag in ("incomingServer", "outgoingServer"):
            assert server.findtext("hostname") == "mail.example.com"
            assert server.findtext("username") == "%EMAILADDRESS%"
            assert server.findtext("authentication") == "password-cleartext"
            out.append(
                (server.get("type"), int(server.findtext("port")), server.findtext("socketType"))
            )
    return out


def test_thunderbird_default_ports() -> None:
    # PORTS default: 25,80,443,465,993,995,4190.
    c = client()
    expected = [("imap", 993, "SSL"), ("pop3", 995, "SSL"), ("smtp", 465, "SSL")]
    assert thunderbird_servers(c) == expected
    assert thunderbird_servers(c, "/.well-known/autoconfig/mail/config-v1.1.xml") == expected
    root = ET.fromstring(c.get("/mail/config-v1.1.xml").text)
    smtp = root.find("emailProvider/outgoingServer")
    assert smtp.findtext("useGlobalPreferredServer") == "false"
    docs = root.find("emailProvider/documentation")
    assert docs.get("url") == "https://mail.example.com/admin/client"


def test_thunderbird_lists_what_listens_preferred_first() -> None:
    c = client(PORTS="25,80,110,143,443,587,993")
    assert thunderbird_servers(c) == [
        ("imap", 993, "SSL"),
        ("imap", 143, "STARTTLS"),
        ("pop3", 110, "STARTTLS"),
        ("smtp", 587, "STARTTLS"),
    ]


def test_thunderbird_notls_is_plain() -> None:
    c = client(TLS_FLAVOR="notls", PORTS="25,80,143,587,993,465")
    assert thunderbird_servers(c) == [("imap", 143, "plain"), ("smtp", 587, "plain")]
    root = ET.fromstring(c.get("/mail/config-v1.1.xml").text)
    assert root.find("emailProvider/documentation").get("url").startswith("http://mail.")


def test_no_incoming_service_is_404_not_an_empty_document() -> None:
    c = client(PORTS="25,80,443,465")
    assert c.get("/mail/config-v1.1.xml").status_code == 404
    assert c.get("/apple.mobileconfig").status_code == 404


def test_thunderbird_names_the_dav_server_only_when_webdav_is_on() -> None:
    root = ET.fromstring(client().get("/mail/config-v1.1.xml").text)
    assert root.find("addressBook") is None and root.find("calendar") is None
    root = ET.fromstring(client(WEBDAV="radicale").get("/mail/config-v1.1.xml").text)
    for tag, kind in (("addressBook", "carddav"), ("calendar", "caldav")):
        element = root.find(tag)
        assert element is not None and element.get("type") == kind
        assert element.findtext("serverURL") == "https://mail.example.com/webdav/"
        assert element.findtext("username") == "%EMAILADDRESS%"
        assert element.findtext("authentication") == "http-basic"
    notls = client(WEBDAV="radicale", TLS_FLAVOR="notls", PORTS="25,80,143,587")
    plain = ET.fromstring(notls.get("/mail/config-v1.1.xml").text)
    assert plain.findtext("calendar/serverURL") == "http://mail.example.com/webdav/"


# -- Outlook ----------------------------------------------------------------------------------


def outlook(c: TestClient, body: str | bytes, path: str = "/autodiscover/autodiscover.xml"):
    return c.post(path, content=body, headers={"Content-Type": "text/xml"})


def protocols(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.text)
    account = root.find(f"{OUTLOOK}Response/{OUTLOOK}Account")
    assert account.findtext(f"{OUTLOOK}AccountType") == "email"
    assert account.findtext(f"{OUTLOOK}Action") == "settings"
    return [
        {child.tag.removeprefix(OUTLOOK): child.text for child in protocol}
        for protocol in account.findall(f"{OUTLOOK}Protocol")
    ]


def test_outlook_default_ports_with_the_login_name() -> None:
    c = client()
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        got = protocols(outlook(c, request_xml("Joe@Bücher.example"), path))
        assert [(p["Type"], p["Port"], p["SSL"], p["Encryption"]) for p in got] == [
            ("IMAP", "993", "on", "SSL"),
            ("POP3", "995", "on", "SSL"),
            ("SMTP", "465", "on", "SSL"),
        ]
        assert {p["Server"] for p in got} == {"mail.example.com"}
        assert {p["LoginName"] for p in got} == {"joe@xn--bcher-kva.example"}
        assert {p["SPA"] for p in got} == {"off"}


def test_outlook_starttls_and_notls() -> None:
    got = protocols(outlook(client(PORTS="25,143,587"), request_xml("joe@example.com")))
    assert [(p["Type"], p["Port"], p["SSL"], p["Encryption"]) for p in got] == [
        ("IMAP", "143", "on", "TLS"),
        ("SMTP", "587", "on", "TLS"),
    ]
    got = protocols(outlook(client(TLS_FLAVOR="notls", PORTS="110,587"), request_xml("j@x.org")))
    assert [(p["Type"], p["Port"], p["SSL"], p["Encryption"]) for p in got] == [
        ("POP3", "110", "off", "None"),
        ("SMTP", "587", "off", "None"),
    ]


def test_outlook_get_answers_without_a_login_name() -> None:
    got = protocols(client().get("/autodiscover/autodiscover.xml"))
    assert got and all("LoginName" not in p for p in got)


def test_outlook_other_schemas_get_error_601() -> None:
    mobilesync = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
    response = outlook(client(), request_xml("joe@example.com", mobilesync))
    assert response.status_code == 200
    assert "<ErrorCode>601</ErrorCode>" in response.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not well-formed"),
        (b"<Autodiscover><Request>", "not well-formed"),
        (b"\xff\xfe<a/>", "not well-formed"),
        (b"<Other/>", "not an Autodiscover document"),
        (b"<Autodiscover><Request/></Autodiscover>", "no EMailAddress"),
        (request_xml("not an address").encode(), "EMailAddress:"),
        (request_xml("joe@exa mple.com").encode(), "EMailAddress:"),
        (request_xml("a" * 300 + "@example.com").encode(), "EMailAddress:"),
        # Entity expansion ("billion laughs") and external entities: DTDs are refused.
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;">]>'
            b"<Autodiscover><Request><EMailAddress>&y;@example.com</EMailAddress>"
            b"</Request></Autodiscover>",
            "not well-formed",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<Autodiscover><Request><EMailAddress>&e;</EMailAddress></Request></Autodiscover>",
            "not well-formed",
        ),
    ],
)
def test_outlook_malformed_requests_get_400(body: bytes, message: str) -> None:
    response = outlook(client(), body)
    assert response.status_code == 400
    assert message in response.text
    assert "root:" not in response.text


def test_outlook_oversized_request_is_refused() -> None:
    padding = "<!--" + "x" * MAX_BODY + "-->"
    response = outlook(client(), request_xml("joe@example.com") + padding)
    assert response.status_code == 400
    assert "larger than" in response.text


def test_outlook_json_points_at_the_xml_service() -> None:
    c = client()
    for path in (
        "/autodiscover/autodiscover.json",
        "/Autodiscover/Autodiscover.json",
        "/autodiscover/autodiscover.json/v1.0/joe@example.com",
    ):
        response = c.get(path, params={"Protocol": "AutodiscoverV1"})
        assert response.status_code == 200
        assert response.json() == {
            "Protocol": "AutodiscoverV1",
            "Url": "https://mail.example.com/autodiscover/autodiscover.xml",
        }
    assert c.get("/autodiscover/autodiscover.json").status_code == 200
    assert (
        c.get("/autodiscover/autodiscover.json", params={"Protocol": "ActiveSync"}).status_code
        == 404
    )


# -- Apple ------------------------------------------------------------------------------------


def test_apple_profile_with_the_address() -> None:
    c = client(PORTS="25,143,587,993")
    for path in ("/apple", "/apple.mobileconfig", "/mobileconfig"):
        response = c.get(path, params={"emailaddress": "Joe@Example.com"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-apple-aspen-config"
        assert "mail.example.com.mobileconfig" in response.headers["content-disposition"]
        profile = plistlib.loads(response.content)
        assert profile["PayloadType"] == "Configuration"
        (account,) = profile["PayloadContent"]
        assert account["PayloadType"] == "com.apple.mail.managed"
        assert account["EmailAddress"] == "joe@example.com"
        assert account["IncomingMailServerUsername"] == "joe@example.com"
        assert account["EmailAccountType"] == "EmailTypeIMAP"
        assert (account["IncomingMailServerPortNumber"], account["IncomingMailServerUseSSL"]) == (
            993,
            True,
        )
        assert (account["OutgoingMailServerPortNumber"], account["OutgoingMailServerUseSSL"]) == (
            587,
            True,
        )
        assert account["IncomingMailServerHostName"] == "mail.example.com"
    # Stable identifiers per address, so installing again replaces the profile.
    one = plistlib.loads(c.get("/apple", params={"email": "joe@example.com"}).content)
    two = plistlib.loads(c.get("/apple", params={"emailaddress": "joe@example.com"}).content)
    other = plistlib.loads(c.get("/apple", params={"email": "ann@example.com"}).content)
    assert one["PayloadUUID"] == two["PayloadUUID"] != other["PayloadUUID"]


def test_apple_profile_adds_calendar_and_contacts_when_webdav_is_on() -> None:
    plain = plistlib.loads(client().get("/apple", params={"email": "joe@example.com"}).content)
    assert [p["PayloadType"] for p in plain["PayloadContent"]] == ["com.apple.mail.managed"]
    c = client(WEBDAV="radicale")
    profile = plistlib.loads(c.get("/apple", params={"email": "joe@example.com"}).content)
    _mail, caldav, carddav = profile["PayloadContent"]
    assert caldav["PayloadType"] == "com.apple.caldav.account"
    assert carddav["PayloadType"] == "com.apple.carddav.account"
    home = "https://mail.example.com/webdav/joe@example.com/"
    assert (caldav["CalDAVPrincipalURL"], caldav["CalDAVUsername"]) == (home, "joe@example.com")
    assert (carddav["CardDAVHostName"], carddav["CardDAVPort"]) == ("mail.example.com", 443)
    assert carddav["CardDAVUseSSL"] is True
    uuids = {p["PayloadUUID"] for p in profile["PayloadContent"]} | {profile["PayloadUUID"]}
    assert len(uuids) == 4
    anonymous = plistlib.loads(c.get("/apple").content)["PayloadContent"][1]
    assert anonymous["CalDAVPrincipalURL"] == "https://mail.example.com/webdav/"
    assert "CalDAVUsername" not in anonymous


def test_apple_pop_and_notls() -> None:
    c = client(TLS_FLAVOR="notls", PORTS="110,587")
    account = plistlib.loads(c.get("/mobileconfig").content)["PayloadContent"][0]
    assert account["EmailAccountType"] == "EmailTypePOP"
    assert account["EmailAddress"] == ""  # the user fills it in, as with Mailu's profile
    assert (account["IncomingMailServerPortNumber"], account["IncomingMailServerUseSSL"]) == (
        110,
        False,
    )
    assert account["OutgoingMailServerUseSSL"] is False


def test_apple_refuses_a_bad_address() -> None:
    c = client()
    assert c.get("/apple", params={"emailaddress": "<script>"}).status_code == 400
    response = c.get("/apple?email=a@example.com&email=b@example.com")
    assert response.status_code == 400


def test_markup_in_settings_is_escaped() -> None:
    c = client(SITENAME='Joe & "Ann" <Mail>')
    root = ET.fromstring(c.get("/mail/config-v1.1.xml").text)
    assert root.findtext("emailProvider/displayName") == 'Joe & "Ann" <Mail>'
    profile = plistlib.loads(c.get("/apple").content)
    assert profile["PayloadOrganization"] == 'Joe & "Ann" <Mail>'
