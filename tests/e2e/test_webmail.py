"""WEBMAIL=roundcube with single sign-on, through the real nginx, web application, gate,
php-fpm, Dovecot and Postfix.

Roundcube is served under WEB_WEBMAIL only to browsers signed in to Roost's SSO (nginx
asks the web application before every PHP request); it never sees a password: it logs in
to IMAP, submission and ManageSieve with a token minted for the SSO session, which the
gate takes on the webmail's internal listeners only, while the session lives. In headless
Chromium a user signs in once, reads a message that arrived over SMTP, downloads two as a
zip (zipdownload), sends one that an outside peer receives, sets a filter, imports a PGP
key and reads a message encrypted to it (enigma), and signs out of Roundcube, which ends
the SSO session too (and the reverse); a user with two-factor login gets nowhere with the
password alone. With imaplib and smtplib against Dovecot and Postfix directly, a token is
refused outside its listeners and after the sign-out, and a password on the webmail's.
(With WEBMAIL off there is no such service or route: tests/unit/test_services_roundcube.py.)
"""

from __future__ import annotations

import imaplib
import pwd
import re
import secrets
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from tests.e2e.conftest import REMOTE_DOMAIN, Receiver, require_root
from tests.e2e.stack import Stack, e2e_address, running
from tests.e2e.test_inbound import message
from tests.e2e.test_two_factor_mail import ENROL

pytestmark = pytest.mark.e2e

#: Prints the secret of the enrolment it confirms (test_two_factor_mail.py's script).
SCRIPT = (sys.executable, "-c", ENROL.replace('print("enrolled")', "print(secret)"))
WEBMAIL_IMAP = 10143
WEBMAIL_SUBMISSION = 10027


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    settings = {"WEBMAIL": "roundcube", "WEB_WEBMAIL": "/mail", "PORTS": "25,80,443,465,993,4190"}
    with running(Stack("webmail", e2e_address(140), settings=settings)) as started:
        yield started


def where(page: httpx.Response) -> str:
    """A redirect's target on this site, without nginx's scheme and host."""
    url = httpx.URL(page.headers["location"])
    return url.raw_path.decode()


def client_for(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=f"https://{stack.address}", verify=False, timeout=30)


def new_user(stack: Stack, local: str) -> tuple[str, str]:
    password = secrets.token_urlsafe(12)
    return stack.add_user(f"{local}{secrets.token_hex(3)}", password), password


def sso_sign_in(client: httpx.Client, user: str, password: str, url: str = "") -> httpx.Response:
    """Roost's sign-in form as a browser posts it (and the first sign-in's password
    change, which `roost user` asks for); the page it ends on."""
    form = client.get("/sso/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text[:2000]
    fields = {"csrf_token": csrf.group(1), "email": user, "password": password, "url": url}
    page = client.post("/sso/login", data=fields, follow_redirects=False)
    assert page.status_code == 303, page.text[:2000]
    if where(page) == "/sso/pw_change":
        form = client.get("/sso/pw_change")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text[:2000]
        fields = {"csrf_token": csrf.group(1), "current": password}
        fields |= {"password": password + "-2", "password2": password + "-2"}
        page = client.post("/sso/pw_change", data=fields, follow_redirects=False)
        assert page.status_code == 303, page.text[:2000]
    return page


def sign_in(client: httpx.Client, user: str, password: str) -> httpx.Response:
    """Sign in once at Roost's SSO and open the webmail: the inbox it lands in."""
    sso_sign_in(client, user, password)
    inbox = client.get("/mail/", follow_redirects=True)
    assert inbox.status_code == 200, inbox.text[:2000]
    assert inbox.url.path == "/mail/" and inbox.url.params["_task"] == "mail", inbox.url
    return inbox


def mint(stack: Stack, client: httpx.Client) -> httpx.Headers:
    """Ask the web application for a webmail token as nginx does on the SSO entry path
    (the endpoint is internal to nginx: here straight over the web's socket)."""
    transport = httpx.HTTPTransport(uds=str(stack.root / "run" / "web" / "web.sock"))
    cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    with httpx.Client(transport=transport, timeout=10) as web:
        answer = web.get(
            "http://web/sso/webmail/token",
            headers={"Cookie": cookies, "Host": stack.address, "X-Original-URI": "/mail/sso"},
        )
    assert answer.status_code == 204, answer.text
    return answer.headers


class _FromInternal(imaplib.IMAP4):
    """IMAP from the internal address itself, as Roundcube connects (Dovecot counts such
    a connection as secured, so it takes a plaintext LOGIN without TLS)."""

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.host, 0)
        )


def webmail_imap(stack: Stack, user: str, secret: str) -> str:
    """An IMAP login on the webmail's internal listener; 'OK' or the server's refusal."""
    client = _FromInternal(stack.address, WEBMAIL_IMAP)
    try:
        return str(client.login(user, secret)[0])
    except imaplib.IMAP4.error as exc:
        return f"NO {exc}"
    finally:
        client.shutdown()


def test_a_browser_without_sso_is_sent_to_sign_in_and_never_loops(stack: Stack) -> None:
    with client_for(stack) as client:
        assert client.get("/mail").status_code == 301
        for path in ("/mail/", "/mail/?_task=mail&_mbox=INBOX", "/mail/sso"):
            page = client.get(path)
            assert page.status_code == 302, (path, page.text[:500])
            assert where(page).startswith("/sso/login?url=/mail/"), path
        # Roundcube's background requests get 403, on which its page reloads itself.
        ajax = client.get(
            "/mail/",
            params={"_task": "mail", "_action": "refresh"},
            headers={"X-Roundcube-Request": "x"},
        )
        assert ajax.status_code == 403
        # The sign-in page is the web's own, never guarded: it answers.
        assert client.get(where(page)).status_code == 200
        # Roundcube's static files need no session; its internal endpoints are nginx's.
        page = client.get("/mail/skins/elastic/styles/styles.min.css")
        assert page.status_code == 200 and "text/css" in page.headers["content-type"]
        assert client.get("/sso/webmail/token").status_code == 404
        assert client.get("/sso/webmail/auth").status_code == 404
        # A client header cannot hand Roundcube a token or an address.
        forged = client.get("/mail/", headers={"X-Roost-Webmail-Token": "x", "Roost-Sso-User": "y"})
        assert forged.status_code == 302


def test_only_roundcubes_entry_point_runs_php(stack: Stack) -> None:
    with client_for(stack) as client:
        assert client.get("/mail/program/include/iniset.php").status_code == 404
        assert client.get("/mail/installer/index.php").status_code == 404
        assert client.get("/mail/.htaccess").status_code == 404
        assert client.get("/mail/plugins/jqueryui/config.inc.php.dist").status_code == 404
        assert client.get("/mail/plugins/roost/roost.php").status_code == 404
        assert client.get("/webmail/").status_code == 404


def test_signed_in_once_the_inbox_opens_and_php_runs_as_roundcubes_user(stack: Stack) -> None:
    user, password = new_user(stack, "direct")
    with client_for(stack) as client:
        inbox = sign_in(client, user, password)
        assert user in inbox.text
        # Roundcube's password form is gone.
        assert 'name="_pass"' not in inbox.text
    stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/imap/{WEBMAIL_IMAP} .*webmail token")
    status = stack.roost("status")
    assert re.search(r"roundcube\b.*running", status.stdout), status.stdout
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


def test_a_token_opens_the_webmail_listeners_only_and_dies_with_the_sso_session(
    stack: Stack,
) -> None:
    user, password = new_user(stack, "tokens")
    with client_for(stack) as client:
        sso_sign_in(client, user, password)
        minted = mint(stack, client)
        token = minted["x-roost-webmail-token"]
        assert minted["x-roost-webmail-user"] == user
        assert webmail_imap(stack, user, token) == "OK"
        # Submission for the webmail takes it too (Postfix's SASL through Dovecot).
        submission = smtplib.SMTP(
            stack.address, WEBMAIL_SUBMISSION, timeout=30, source_address=(stack.address, 0)
        )
        with submission as smtp:
            smtp.ehlo("roundcube")
            assert smtp.login(user, token)[0] == 235
        # Another account's address with this token, and a password: refused there.
        other, _ = new_user(stack, "other")
        assert webmail_imap(stack, other, token).startswith("NO")
        assert webmail_imap(stack, user, password + "-2").startswith("NO")
        stack.wait_for_log(r"failed: webmail: password refused: the webmail's listeners take")
        # The public IMAP and submission ports refuse it.
        imap = stack.imap()
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(user, token)
        imap.shutdown()
        with stack.smtps() as smtp, pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(user, token)
        stack.wait_for_log(r"webmail token outside the webmail's listeners")
        # A newer token replaces it.
        newer = mint(stack, client)["x-roost-webmail-token"]
        assert webmail_imap(stack, user, token).startswith("NO")
        assert webmail_imap(stack, user, newer) == "OK"
        # Signed out of the SSO: refused.
        form = client.get("/sso/logout")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text[:2000]
        client.post("/sso/logout", data={"csrf_token": csrf.group(1)})
    assert webmail_imap(stack, user, newer).startswith("NO")
    stack.wait_for_log(r"webmail token unknown, expired or revoked")


def in_folder(stack: Stack, user: str, password: str, folder: str, subject: str) -> bool:
    imap = stack.imap()
    try:
        imap.login(user, password)
        if imap.select(folder, readonly=True)[0] != "OK":
            return False
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        return bool(found[0].split())
    finally:
        imap.logout()


def pgp_key_pair(user: str, home: Path) -> str:
    """A key pair for ``user`` made with gpg in ``home`` (ed25519 with a cv25519
    encryption subkey, no passphrase): its secret key, armored, as a user would import
    it (Debian's enigma cannot make keys in the browser: it ships without OpenPGP.js)."""
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-generate-key", user, "future-default", "default"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    exported = subprocess.run(
        [*gpg, "--passphrase", "", "--armor", "--export-secret-keys", user],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return exported.stdout


def pgp_mime(home: Path, sender: str, rcpt: str, subject: str, text: str) -> str:
    """A PGP/MIME message (RFC 3156 section 4) encrypted to ``rcpt``'s key in ``home``."""
    inner = f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n"
    gpg = ["gpg", "--homedir", str(home), "--batch", "--trust-model", "always", "--armor"]
    encrypted = subprocess.run(
        [*gpg, "--encrypt", "--recipient", rcpt],
        input=inner,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    boundary = f"pgp-{uuid.uuid4().hex}"
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@outside.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
        f'boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n{encrypted}\r\n"
        f"--{boundary}--\r\n"
    )


def sso_in_browser(page: Any, base: str, user: str, password: str) -> None:
    """Roost's sign-in page (and the first sign-in's password change)."""
    page.fill("#email", user)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    if page.url == f"{base}/sso/pw_change":
        page.fill("#current", password)
        page.fill("#password", password + "-2")
        page.fill("#password2", password + "-2")
        page.click("main button[type=submit]")
        page.wait_for_load_state()


def test_in_chromium_sign_in_once_read_send_filter_and_sign_out_of_both(
    stack: Stack, receiver: Receiver
) -> None:
    browsing = pytest.importorskip("tests.e2e.browsing")
    browsing.need_chromium()
    base = browsing.BASE
    user, password = new_user(stack, "browser")
    subject = f"in the browser {uuid.uuid4()}"
    junk = f"junk for the browser {uuid.uuid4()}"
    secret = f"encrypted for the browser {uuid.uuid4()}"
    # The user's PGP key pair, made outside Roundcube; a message encrypted to it.
    with tempfile.TemporaryDirectory(prefix="gpg-") as gnupg:
        try:
            armored_key = pgp_key_pair(user, Path(gnupg))
            encrypted = pgp_mime(Path(gnupg), "a@sender.test", user, secret, "The secret is 42.")
        finally:
            subprocess.run(["gpgconf", "--homedir", gnupg, "--kill", "gpg-agent"], check=False)
    with stack.smtp() as smtp:
        for title in (subject, junk):
            smtp.sendmail("a@sender.test", [user], message("a@sender.test", user, title))
        smtp.sendmail("a@sender.test", [user], encrypted)
    stack.wait_for_message(user, password, subject)
    stack.wait_for_message(user, password, junk)
    stack.wait_for_message(user, password, secret)
    with browsing.chromium_for(stack) as chromium:
        context = browsing.new_context(chromium)
        page = context.new_page()
        # The webmail sends the browser to sign in once, and back to the inbox.
        page.goto(f"{base}/mail/")
        assert page.url.startswith(f"{base}/sso/login?url=/mail/"), page.url
        sso_in_browser(page, base, user, password)
        row = page.locator("#messagelist tr", has_text=subject)
        row.wait_for(timeout=20_000)
        assert page.locator("#rcmloginpwd").count() == 0
        row.dblclick()
        page.wait_for_url(re.compile(r"_action=show"), timeout=15_000)
        page.locator("#messagebody", has_text="Hello from the test.").wait_for(timeout=15_000)

        # zipdownload: two messages selected, More > Download > Maildir: a zip of .eml files.
        page.goto(f"{base}/mail/?_task=mail&_mbox=INBOX")
        page.locator("#messagelist tr", has_text=subject).click()
        page.wait_for_load_state("networkidle")
        page.locator("#messagelist tr", has_text=junk).click(modifiers=["Control"])
        page.click("#messagemenulink")
        page.click("#message-menu a.download")
        with page.expect_download(timeout=15_000) as download:
            page.click("#zipdownload-menu a.download.maildir")
        with zipfile.ZipFile(download.value.path()) as archive:
            names = archive.namelist()
            subjects = {message_from_bytes(archive.read(name))["Subject"] for name in names}
        assert all(name.endswith(".eml") for name in names), names
        assert subjects == {subject, junk}

        # markasjunk moves a message to Junk (where Dovecot's IMAPSieve hands it to Rspamd).
        page.goto(f"{base}/mail/?_task=mail&_mbox=INBOX")
        page.locator("#messagelist tr", has_text=junk).click()
        # Roundcube ignores a command while it is busy loading the message's preview.
        page.wait_for_load_state("networkidle")
        with page.expect_response(lambda r: "plugin.markasjunk.junk" in r.url, timeout=15_000):
            page.locator("a.button.junk:not(.disabled)").first.click()
        deadline = time.monotonic() + 20
        while not in_folder(stack, user, password + "-2", "Junk", junk):
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.5)

        # Send one to an outside peer (submission on the webmail's listener, the token).
        sent_subject = f"from webmail {uuid.uuid4()}"
        rcpt = f"friend@{REMOTE_DOMAIN}"
        page.goto(f"{base}/mail/?_task=mail&_action=compose")
        page.locator("#compose-subject").wait_for(timeout=15_000)
        page.locator("#compose_to input").first.fill(rcpt)
        page.fill("#compose-subject", sent_subject)
        page.fill("#composebody", "Sent from Roundcube.")
        page.click("button.send, a.send")
        # Roundcube returns to the list once the message is sent.
        page.wait_for_url(lambda url: "_action=compose" not in url, timeout=30_000)
        deadline = time.monotonic() + 30
        while not receiver.by_subject(sent_subject):
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.3)
        mail_from, rcpts, received = receiver.by_subject(sent_subject)[0]
        assert (mail_from, rcpts) == (user, [rcpt])
        assert "Sent from Roundcube." in received.get_payload()
        stack.wait_for_log(
            rf"Login attempt for: {re.escape(user)}/smtp/{WEBMAIL_SUBMISSION} .*webmail token"
        )

        # A filter (managesieve on the webmail's ManageSieve listener).
        page.goto(f"{base}/mail/?_task=settings&_action=plugin.managesieve")
        page.click("#toolbar-menu a.create, a.create")
        frame = page.frame_locator("#filter-box")
        frame.locator("#_name").fill("From the boss")
        join = frame.locator("select#_join")
        if join.count():
            join.select_option("any")  # all messages
        else:
            frame.locator("input[name=_join][value=any]").check()
        frame.locator(".formbuttons .submit, .formbuttons .btn-primary").first.click()
        page.locator("#filterslist", has_text="From the boss").wait_for(timeout=15_000)
        stack.wait_for_log(rf"Login attempt for: {re.escape(user)}/sieve/14190 .*webmail token")
        script = subprocess.run(
            [
                "doveadm",
                "-c",
                str(stack.root / "etc" / "dovecot" / "dovecot.conf"),
                "sieve",
                "get",
                "-u",
                user,
                "roundcube",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "From the boss" in script.stdout, (script.stdout, script.stderr)

        # enigma: Settings > PGP Keys imports the user's key pair; GnuPG keeps it in the
        # user's key ring under ROOT/webmail/gpg, and the encrypted message reads in clear.
        page.goto(f"{base}/mail/?_task=settings")
        page.click("#settings-menu a.enigma.keys")
        page.wait_for_url(re.compile(r"_action=plugin\.enigmakeys"), timeout=15_000)
        page.wait_for_load_state("networkidle")  # the key list, and commands enabled
        page.click("a.import:not(.disabled)[onclick*='plugin.enigma-key-import']")
        dialog = page.frame_locator("iframe[src*='_a=import']")
        dialog.locator("#rcmimportfile").set_input_files(
            {"name": "key.asc", "mimeType": "application/pgp-keys", "buffer": armored_key.encode()}
        )
        page.click(".ui-dialog-buttonpane button.mainaction")
        page.locator("#keys-table tr", has_text=user).wait_for(timeout=15_000)
        keyring = stack.root / "webmail" / "gpg" / user
        assert keyring.stat().st_uid == pwd.getpwnam("_roundcube").pw_uid
        assert list((keyring / "private-keys-v1.d").glob("*.key")), list(keyring.iterdir())
        page.goto(f"{base}/mail/?_task=mail&_mbox=INBOX")
        page.locator("#messagelist tr", has_text=secret).dblclick()
        page.wait_for_url(re.compile(r"_action=show"), timeout=15_000)
        page.locator("#messagebody", has_text="The secret is 42.").wait_for(timeout=15_000)

        # Signing out of Roundcube signs out of the SSO too.
        page.goto(f"{base}/mail/?_task=mail")
        page.locator("#messagelist tr", has_text=subject).wait_for(timeout=20_000)
        page.click("a.logout")
        page.wait_for_url(re.compile(r"/sso/login"), timeout=15_000)
        page.goto(f"{base}/admin/account")
        assert page.url.startswith(f"{base}/sso/login"), page.url
        page.goto(f"{base}/mail/?_task=mail")
        assert page.url.startswith(f"{base}/sso/login?url=/mail/"), page.url

        # The reverse: signed in again, the SSO's sign-out ends the webmail as well.
        sso_in_browser(page, base, user, password + "-2")
        page.locator("#messagelist tr", has_text=subject).wait_for(timeout=20_000)
        page.goto(f"{base}/sso/logout")
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        page.goto(f"{base}/mail/?_task=mail")
        assert page.url.startswith(f"{base}/sso/login?url=/mail/"), page.url
        # Another account signing in on the same browser gets its own mailbox, not the
        # stale Roundcube session's.
        second, second_password = new_user(stack, "second")
        sso_in_browser(page, base, second, second_password)
        page.wait_for_url(re.compile(r"/mail/\?_task=mail"), timeout=20_000)
        assert second in page.content()
        assert page.locator("#messagelist tr", has_text=subject).count() == 0
        context.close()


def test_a_two_factor_user_needs_the_code_for_webmail(stack: Stack) -> None:
    browsing = pytest.importorskip("tests.e2e.browsing")
    browsing.need_chromium()
    base = browsing.BASE
    user, password = new_user(stack, "totp")
    with client_for(stack) as client:
        sso_sign_in(client, user, password)  # the first sign-in's password change
    password += "-2"
    enrolled = subprocess.run(
        [*SCRIPT, str(stack.env_file), user],
        capture_output=True,
        text=True,
        env=stack.environ(),
        timeout=60,
    )
    secret = enrolled.stdout.strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), enrolled.stderr
    with client_for(stack) as client:
        first = sso_sign_in(client, user, password, url="/mail/")
        assert where(first) == "/sso/2fa"
        # The password alone: the webmail still sends the browser to sign in.
        webmail = client.get("/mail/")
        assert webmail.status_code == 302 and where(webmail).startswith("/sso/login")
        assert client.get("/mail/sso").status_code == 302
    with browsing.chromium_for(stack) as chromium:
        page = browsing.new_context(chromium).new_page()
        page.goto(f"{base}/mail/")
        sso_in_browser(page, base, user, password)
        assert page.url == f"{base}/sso/2fa"
        page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r"/mail/\?_task=mail"), timeout=20_000)
