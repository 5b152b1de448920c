"""WEBDAV=radicale through the real nginx, gate and Radicale, with a real CalDAV client.

One stack (no web application: WebDAV needs none). User A, with the caldav package,
creates a calendar and an event, and an address book with a contact (caldav speaks
WebDAV for the CardDAV part: extended MKCOL, RFC 5689, and a vCard PUT, RFC 6352); A
signs in once with the password and once with an app token. User B reads none of it. A
wrong password is a 401 with a Basic challenge and the gate's fail2ban line; no
credentials at all is a challenge and no log line; the well-known URIs redirect.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import caldav
import httpx
import pytest

from tests.e2e.conftest import require_root
from tests.e2e.stack import HOSTNAME, Stack, e2e_address, running

pytestmark = [
    pytest.mark.e2e,
    # The stack's self-signed certificate names HOSTNAMES, not the address the tests use.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Roost tests//EN\r\nBEGIN:VEVENT\r\n"
    "UID:{uid}\r\nDTSTAMP:20300501T080000Z\r\nDTSTART:20300517T090000Z\r\n"
    "DTEND:20300517T100000Z\r\nSUMMARY:Standup\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
VCARD = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Ada Lovelace\r\n"
    "N:Lovelace;Ada;;;\r\nEMAIL:ada@analytical.example\r\nEND:VCARD\r\n"
)
ADDRESSBOOK_MKCOL = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
    "<D:set><D:prop><D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>"
    "<D:displayname>Friends</D:displayname></D:prop></D:set></D:mkcol>"
)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    settings = {"WEBDAV": "radicale", "WEB_ADMIN": "", "PORTS": "25,80,443,993"}
    with running(Stack("webdav", e2e_address(130), settings=settings)) as started:
        yield started


@pytest.fixture(scope="module")
def users(stack: Stack) -> dict[str, str]:
    """Two users and their passwords, and an app token of the first."""
    a_password, b_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    a = stack.add_user("dav-a", a_password)
    b = stack.add_user("dav-b", b_password)
    created = stack.roost("token", "add", a, "--comment", "phone")
    token = re.search(r"\b[0-9a-f]{32}\b", created.stdout)
    assert token, created.stdout
    return {
        "a": a,
        "a_password": a_password,
        "a_token": token.group(0),
        "b": b,
        "b_password": b_password,
    }


def base(stack: Stack) -> str:
    return f"https://{stack.address}/webdav/"


def dav(stack: Stack, user: str, password: str) -> caldav.DAVClient:
    return caldav.DAVClient(
        url=base(stack), username=user, password=password, ssl_verify_cert=False
    )


def raw(stack: Stack, auth: tuple[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=f"https://{stack.address}", verify=False, headers={"Host": HOSTNAME}, auth=auth
    )


def test_calendar_event_and_contact_stay_their_owners(stack: Stack, users: dict[str, str]) -> None:
    a, b = users["a"], users["b"]
    with dav(stack, a, users["a_password"]) as client:
        principal = client.principal()
        assert unquote(str(principal.url)).endswith(f"/webdav/{a}/")
        calendar = principal.make_calendar(name="Work", cal_id="work")
        calendar.save_event(EVENT.format(uid=uuid.uuid4()))
        addressbook = f"{base(stack)}{a}/friends/"
        made = client.request(
            addressbook, "MKCOL", ADDRESSBOOK_MKCOL, {"Content-Type": "application/xml"}
        )
        assert made.status == 201, made.raw
        uid = str(uuid.uuid4())
        put = client.put(
            f"{addressbook}{uid}.vcf", VCARD.format(uid=uid), {"Content-Type": "text/vcard"}
        )
        assert put.status == 201, put.raw

    # A again, signed in with the app token: the same calendar and event.
    with dav(stack, a, users["a_token"]) as client:
        calendars = client.principal().calendars()
        assert [c.name for c in calendars] == ["Work"]
        events = calendars[0].events()
        assert [e.vobject_instance.vevent.summary.value for e in events] == ["Standup"]
        card = client.request(f"{addressbook}{uid}.vcf", "GET")
        assert card.status == 200 and "Ada Lovelace" in card.raw

    # B sees only B's own (empty) home, and none of A's collections or items.
    with dav(stack, b, users["b_password"]) as client:
        assert unquote(str(client.principal().url)).endswith(f"/webdav/{b}/")
        assert client.principal().calendars() == []
    with raw(stack, (b, users["b_password"])) as http:
        for path in (f"/webdav/{a}/", f"/webdav/{a}/work/", f"/webdav/{a}/friends/"):
            answer = http.request("PROPFIND", path, headers={"Depth": "1"})
            assert answer.status_code == 403, (path, answer.status_code, answer.text)
        assert http.get(f"/webdav/{a}/friends/{uid}.vcf").status_code == 403
        # Naming A in Radicale's header changes nothing: nginx sets it from the gate's answer.
        forged = http.request("PROPFIND", f"/webdav/{a}/", headers={"X-Remote-User": a})
        assert forged.status_code == 403
        stolen = http.put(f"/webdav/{a}/friends/x.vcf", content=VCARD.format(uid="x"))
        assert stolen.status_code == 403
    with dav(stack, a, users["a_password"]) as client:
        assert len(client.principal().calendars()[0].events()) == 1


def test_wrong_password_is_a_challenge_and_a_logged_failure(
    stack: Stack, users: dict[str, str]
) -> None:
    a = users["a"]
    with raw(stack) as http:
        anonymous = http.request("PROPFIND", f"/webdav/{a}/", headers={"Depth": "0"})
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic ")
        wrong = http.request(
            "PROPFIND", f"/webdav/{a}/", headers={"Depth": "0"}, auth=(a, "not-the-password")
        )
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Basic ")
        # A header naming the user, sent by the client, is not what Radicale believes.
        forged = http.request(
            "PROPFIND", f"/webdav/{a}/", headers={"Depth": "0", "X-Remote-User": a}
        )
        assert forged.status_code == 401
    stack.wait_for_log(
        rf"Login attempt for: {a}/webdav/443 from: \S+: failed: badauth: [0-9a-f]{{6}}"
    )
    assert "Login attempt for: /webdav/" not in stack.log_text()


def test_radicales_web_pages_are_behind_the_same_login(stack: Stack, users: dict[str, str]) -> None:
    with raw(stack) as http:
        assert http.get("/webdav/.web/").status_code == 401
    with raw(stack, (users["b"], users["b_password"])) as http:
        page = http.get("/webdav/.web/")
        assert page.status_code == 200 and "Radicale" in page.text


def test_only_nginx_reaches_radicales_socket(stack: Stack) -> None:
    """Radicale believes X-Remote-User: a local user other than nginx's cannot connect."""
    socket_path = stack.root / "run" / "radicale" / "radicale.sock"
    assert socket_path.is_socket()
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n"
    )

    def connect_as(user: str, group: str) -> int:
        as_user = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--"]
        return subprocess.run([*as_user, sys.executable, "-c", probe, str(socket_path)]).returncode

    assert connect_as("nobody", "nogroup") == 3
    assert connect_as("www-data", "www-data") == 0  # nginx's workers do connect


def test_well_known_uris_redirect_to_webdav(stack: Stack) -> None:
    with raw(stack) as http:
        for name in ("caldav", "carddav"):
            answer = http.get(f"/.well-known/{name}")
            assert answer.status_code == 301
            assert answer.headers["location"].endswith("/webdav/")
    plain = httpx.get(f"http://{stack.address}/.well-known/caldav", headers={"Host": HOSTNAME})
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://{HOSTNAME}/webdav/"
