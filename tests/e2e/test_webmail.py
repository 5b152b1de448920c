"""WEBMAIL=roundcube through the real nginx, php-fpm, Dovecot and Postfix: Roundcube's
login page answers under WEB_WEBMAIL, its static files are served, nothing else of
Debian's PHP is, and php-fpm's workers run as Roundcube's own user. A user signs in
(with the password: single sign-on is not built yet), sees a message that arrived over
SMTP, opens the filters page (ManageSieve), marks the message as junk, sends one that an
outside peer receives, and, in headless Chromium, reads a message and logs out. (With
WEBMAIL off there is no such service or route: tests/unit/test_services_roundcube.py.)
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver, require_root
from tests.e2e.stack import Stack, e2e_address, running
from tests.e2e.test_inbound import message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    settings = {"WEBMAIL": "roundcube", "WEB_WEBMAIL": "/mail", "PORTS": "25,80,443,465,993,4190"}
    with running(Stack("webmail", e2e_address(140), settings=settings)) as started:
        yield started


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"https://{stack.address}", verify=False, timeout=20) as c:
        yield c


def test_login_page_answers_under_web_webmail(client: httpx.Client) -> None:
    assert client.get("/mail").status_code == 301
    page = client.get("/mail/")
    assert page.status_code == 200, page.text[:500]
    assert 'name="_user"' in page.text and 'name="_pass"' in page.text
    # Roundcube's own links point below WEB_WEBMAIL (its request_path).
    stylesheet = re.search(r'href="([^"]*skins/elastic/[^"]*\.css[^"]*)"', page.text)
    assert stylesheet, page.text[:2000]
    css = client.get(httpx.URL("/mail/").join(stylesheet.group(1)))
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_only_roundcubes_entry_point_runs_php(client: httpx.Client) -> None:
    assert client.get("/mail/program/include/iniset.php").status_code == 404
    assert client.get("/mail/installer/index.php").status_code == 404
    assert client.get("/mail/.htaccess").status_code == 404
    assert client.get("/mail/plugins/jqueryui/config.inc.php.dist").status_code == 404
    assert client.get("/webmail/").status_code == 404


def test_php_fpm_workers_are_roundcubes_user(stack: Stack, client: httpx.Client) -> None:
    status = stack.roost("status")
    assert re.search(r"roundcube\b.*running", status.stdout), status.stdout
    assert client.get("/mail/").status_code == 200  # ondemand: a worker now exists
    table = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,user:16=,args="], capture_output=True, text=True
    ).stdout
    rows = [line.split(None, 3) for line in table.splitlines()]
    assert stack.process is not None
    # php-fpm shortens its title to the length of its arguments: find it as roost's child.
    runner = str(stack.process.pid)
    masters = [r[0] for r in rows if r[1] == runner and "php-fpm: master" in r[3]]
    assert len(masters) == 1, table
    workers = [r for r in rows if r[1] == masters[0]]
    assert workers and all(r[2] == "_roundcube" for r in workers), table


def sign_in(client: httpx.Client, user: str, password: str) -> str:
    """Roundcube's login form, as a browser posts it; returns the page's request token."""
    form = client.get("/mail/")
    token = re.search(r'name="_token" value="([^"]+)"', form.text)
    assert token, form.text[:2000]
    fields = {"_token": token.group(1), "_task": "login", "_action": "login"}
    fields |= {"_timezone": "UTC", "_url": "", "_user": user, "_pass": password}
    inbox = client.post("/mail/?_task=login", data=fields, follow_redirects=True)
    request_token = re.search(r'"request_token":"([^"]+)"', inbox.text)
    assert inbox.status_code == 200 and request_token, inbox.text[:2000]
    return request_token.group(1)


def test_a_user_signs_in_and_sees_a_message_that_arrived_over_smtp(
    stack: Stack, client: httpx.Client
) -> None:
    password = secrets.token_urlsafe(12)
    user = stack.add_user("reader", password)
    subject = f"for webmail {uuid.uuid4()}"
    with stack.smtp() as smtp:
        smtp.sendmail("a@sender.test", [user], message("a@sender.test", user, subject))
    stack.wait_for_message(user, password, subject)
    request_token = sign_in(client, user, password)
    listing = client.get(
        "/mail/",
        params={"_task": "mail", "_action": "list", "_mbox": "INBOX", "_remote": "1"},
        headers={"X-Roundcube-Request": request_token},
    )
    assert listing.status_code == 200 and subject in listing.text, listing.text[:2000]

    # The filters page (managesieve plugin) signs in to Dovecot's ManageSieve over TLS.
    filters = client.get("/mail/", params={"_task": "settings", "_action": "plugin.managesieve"})
    assert filters.status_code == 200 and "managesieve" in filters.text, filters.text[:2000]
    assert "Unable to connect to server" not in filters.text
    stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/sieve/4190 .*success")

    # markasjunk moves the message to Junk (where Dovecot's IMAPSieve hands it to Rspamd).
    uid = re.search(r"this.add_message_row\((\d+)", listing.text)
    assert uid, listing.text[:2000]
    junk = client.post(
        "/mail/?_task=mail&_action=plugin.markasjunk.junk",
        data={"_uid": uid.group(1), "_mbox": "INBOX", "_remote": "1"},
        headers={"X-Roundcube-Request": request_token},
    )
    assert junk.status_code == 200 and 'markasjunk_move(\\"Junk\\"' in junk.text, junk.text
    # The page's script then moves it, as a browser does.
    moved = client.post(
        "/mail/?_task=mail&_action=move",
        data={"_uid": uid.group(1), "_mbox": "INBOX", "_target_mbox": "Junk", "_remote": "1"},
        headers={"X-Roundcube-Request": request_token},
    )
    assert moved.status_code == 200, moved.text[:2000]
    imap = stack.imap()
    imap.login(user, password)
    imap.select("Junk", readonly=True)
    _, found = imap.search(None, "SUBJECT", f'"{subject}"')
    imap.logout()
    assert len(found[0].split()) == 1, junk.text[:2000]


def test_a_user_sends_a_message_an_outside_peer_receives(stack: Stack, receiver: Receiver) -> None:
    password = secrets.token_urlsafe(12)
    user = stack.add_user("sender", password)
    with httpx.Client(base_url=f"https://{stack.address}", verify=False, timeout=20) as client:
        token = sign_in(client, user, password)
        compose = client.get("/mail/", params={"_task": "mail", "_action": "compose"})
        compose = client.get(compose.headers["location"]) if compose.is_redirect else compose
        compose_id = re.search(r'"compose_id":"([^"]+)"', compose.text)
        identity = re.search(r'<select name="_from"[^>]*>\s*<option value="(\d+)"', compose.text)
        assert compose_id and identity, compose.text[:3000]
        subject = f"from webmail {uuid.uuid4()}"
        rcpt = f"friend@{REMOTE_DOMAIN}"
        fields = {"_token": token, "_task": "mail", "_action": "send"}
        fields |= {"_id": compose_id.group(1), "_from": identity.group(1), "_to": rcpt}
        fields |= {"_subject": subject, "_message": "Sent from Roundcube.", "_is_html": "0"}
        sent = client.post("/mail/?_task=mail&_unlock=1&_framed=1", data=fields)
        assert sent.status_code == 200, sent.text[:2000]
    deadline = time.monotonic() + 20
    while not receiver.by_subject(subject):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.3)
    mail_from, rcpts, received = receiver.by_subject(subject)[0]
    assert (mail_from, rcpts) == (user, [rcpt])
    assert "Sent from Roundcube." in received.get_payload()


def test_in_chromium_sign_in_read_and_log_out(stack: Stack) -> None:
    browsing = pytest.importorskip("tests.e2e.browsing")
    browsing.need_chromium()
    password = secrets.token_urlsafe(12)
    user = stack.add_user("browser", password)
    subject = f"in the browser {uuid.uuid4()}"
    with stack.smtp() as smtp:
        smtp.sendmail("a@sender.test", [user], message("a@sender.test", user, subject))
    stack.wait_for_message(user, password, subject)
    with browsing.chromium_for(stack) as chromium:
        page = browsing.new_context(chromium).new_page()
        page.goto(f"{browsing.BASE}/mail/")
        page.fill("#rcmloginuser", user)
        page.fill("#rcmloginpwd", password)
        page.click("#rcmloginsubmit")
        row = page.locator("#messagelist tr", has_text=subject)
        row.wait_for(timeout=15_000)
        row.dblclick()
        page.wait_for_url(re.compile(r"_action=show"), timeout=15_000)
        page.locator("#messagebody", has_text="Hello from the test.").wait_for(timeout=15_000)
        page.click("a.logout")
        page.locator("#rcmloginuser").wait_for(timeout=15_000)
        # Signed out: the inbox asks for the password again.
        page.goto(f"{browsing.BASE}/mail/?_task=mail")
        page.locator("#rcmloginuser").wait_for(timeout=15_000)
