"""Anonymous aliases end to end: a user's app token makes one through the real nginx with
SimpleLogin's ``POST /api/alias/random/new``; mail sent to it on port 25 arrives in the
user's INBOX over IMAP; once the user disables it on the web page, and again once the
owner is disabled, Postfix refuses it at RCPT.
"""

from __future__ import annotations

import re
import smtplib
import uuid
from email.message import EmailMessage

import httpx
import pytest

from tests.e2e.stack import DOMAIN, HOSTNAME, Stack, e2e_address

pytestmark = pytest.mark.e2e

PASSWORD = "anonymous-42-mail"


#: The client's own address: on the shared stack, its refused token must not add to the
#: failed logins the browser modules' network (127.0.0.1's) has on record.
CLIENT = e2e_address(70)


@pytest.fixture(scope="module")
def stack(web_stack: Stack) -> Stack:
    """The session's shared web stack (tests/e2e/conftest.py), which has the API on."""
    assert web_stack.settings["API"] == "true"
    return web_stack


def web(stack: Stack) -> httpx.Client:
    """HTTPS to the stack's nginx on 443 as HOSTNAME, from CLIENT."""
    return httpx.Client(
        transport=httpx.HTTPTransport(local_address=CLIENT, verify=stack.tls_context()),
        base_url=f"https://{stack.address}",
        headers={"Host": HOSTNAME},
        timeout=30,
    )


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def send(stack: Stack, recipient: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "shop@outside.test"
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content("Your order has shipped.\n")
    client = stack.smtp()
    try:
        client.send_message(message, from_addr="shop@outside.test", to_addrs=[recipient])
    finally:
        client.quit()


def rcpt_refused(stack: Stack, recipient: str) -> tuple[int, bytes]:
    client = stack.smtp()
    try:
        client.mail("shop@outside.test")
        return client.rcpt(recipient)
    finally:
        client.quit()


def test_an_alias_made_with_an_app_token_receives_mail_until_it_is_switched_off(
    stack: Stack,
) -> None:
    ann = stack.add_user("ann", PASSWORD)
    stack.roost("setmanager", DOMAIN, "ann")  # a domain's manager may make them there
    token = stack.roost("token", "add", ann, "--comment", "password manager").stdout.strip()
    token = token.split()[-1]
    assert re.fullmatch(r"[0-9a-f]{32}", token), token

    with web(stack) as client:
        refused = client.post(
            "/api/alias/random/new?hostname=github.com",
            headers={"Authentication": f"{ann}:{'0' * 32}"},
        )
        assert refused.status_code == 403
        made = client.post(
            "/api/alias/random/new?hostname=github.com",
            headers={"Authentication": f"{ann}:{token}"},
            json={"note": "GitHub account"},
        )
    assert made.status_code == 201, made.text
    alias = made.json()["email"]
    assert re.fullmatch(rf"github\.[a-z]{{5,10}}@{re.escape(DOMAIN)}", alias), alias
    assert made.json()["note"] == "GitHub account"
    stack.wait_for_log(rf"Login attempt for: {re.escape(ann)}/api/443 .*success: token-")

    subject = f"Shipped {uuid.uuid4()}"
    send(stack, alias, subject)
    raw = stack.wait_for_message(ann, PASSWORD, subject)
    assert f"To: {alias}".encode() in raw

    # The owner disables it on the web page (after the forced password change).
    new_password = PASSWORD + "-new"
    with web(stack) as client:
        page = client.get("/sso/login")
        signed = client.post(
            "/sso/login",
            data={"email": ann, "password": PASSWORD, "csrf_token": csrf_of(page)},
        )
        assert signed.status_code == 303
        page = client.get("/sso/pw_change")
        changed = client.post(
            "/sso/pw_change",
            data={
                "current": PASSWORD,
                "password": new_password,
                "password2": new_password,
                "csrf_token": csrf_of(page),
            },
        )
        assert changed.status_code == 303, changed.text
        listing = client.get("/admin/anonalias/list")
        if listing.status_code == 303:  # signed out by the password change: sign in again
            page = client.get("/sso/login")
            client.post(
                "/sso/login",
                data={"email": ann, "password": new_password, "csrf_token": csrf_of(page)},
            )
            listing = client.get("/admin/anonalias/list")
        assert listing.status_code == 200
        assert alias in listing.text
        confirm = client.get(f"/admin/anonalias/disable/{alias}")
        assert confirm.status_code == 200
        done = client.post(
            f"/admin/anonalias/disable/{alias}", data={"csrf_token": csrf_of(confirm)}
        )
        assert done.status_code == 303

    code, _ = rcpt_refused(stack, alias)
    assert 500 <= code < 600, code

    # Enabled again it takes mail; its owner disabled, it does not.
    with web(stack) as client:
        page = client.get("/sso/login")
        client.post(
            "/sso/login",
            data={"email": ann, "password": new_password, "csrf_token": csrf_of(page)},
        )
        confirm = client.get(f"/admin/anonalias/enable/{alias}")
        assert confirm.status_code == 200
        done = client.post(
            f"/admin/anonalias/enable/{alias}", data={"csrf_token": csrf_of(confirm)}
        )
        assert done.status_code == 303
    code, _ = rcpt_refused(stack, alias)
    assert code == 250, code

    stack.roost("user-delete", ann)  # disables the user
    code, _ = rcpt_refused(stack, alias)
    assert 500 <= code < 600, code
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(stack, alias, "after the owner left")
