"""The web application's side of Rspamd's interface: the auth_request endpoint nginx asks
before each request to WEB_ADMIN/antispam/ (roost/web/admin/antispam.py), and Mailu's
/webui_antispam page with the sidebar link, against a real gate, Redis and store.

nginx itself (the location, the redirect, the headers) is in test_web_antispam_nginx.py and,
with Rspamd behind it, in tests/e2e/test_antispam_ui.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import insert

from roost.gate.control import request_reload
from roost.store.models import manager
from tests.unit.test_gate_support import DOMAIN, GateHarness, add_user, flush_limits, running_gate
from tests.unit.test_web_2fa import enrol
from tests.unit.web_harness import BASE, PASSWORD, Browser

AUTH = "/admin/antispam-auth"
UI = "/admin/antispam/"
BOSS = f"boss@{DOMAIN}"
MGR = f"mgr@{DOMAIN}"
PLAIN = f"plain@{DOMAIN}"
TWO_STEP = f"twostep@{DOMAIN}"
FLAGGED = f"flagged@{DOMAIN}"
MOVED = f"moved@{DOMAIN}"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateHarness]:
    with running_gate(tmp_path_factory.mktemp("antispam"), "127.0.47.60") as harness:
        store = harness.store
        add_user(store, BOSS, PASSWORD, global_admin=True)
        add_user(store, TWO_STEP, PASSWORD, global_admin=True)
        add_user(store, MOVED, PASSWORD, global_admin=True)
        add_user(store, FLAGGED, PASSWORD, global_admin=True, change_pw_next_login=True)
        add_user(store, MGR, PASSWORD)
        add_user(store, PLAIN, PASSWORD)
        with store.session() as session:
            session.execute(insert(manager), [{"domain_name": DOMAIN, "user_email": MGR}])
        request_reload(harness.layout)
        enrol(harness, TWO_STEP)
        yield harness


@pytest.fixture(autouse=True)
def fresh_limits(gate: GateHarness) -> None:
    flush_limits(gate)


browse = Browser(client_ip="198.51.100.47")


async def ask(
    client: httpx.AsyncClient, uri: str = UI, method: str = "GET", **headers: str
) -> httpx.Response:
    """What nginx's auth_request sends: the browser's headers plus the original request."""
    sent = {"X-Original-Method": method, "X-Original-URI": uri}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return await client.get(AUTH, headers=sent)


def test_a_global_admin_is_let_through_for_this_sites_requests(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> dict[str, int]:
        stat = UI + "stat"
        answers = {
            # The interface's files: a link or a bookmark opens it.
            "page": await ask(client),
            "page-cross-site": await ask(client, Sec_Fetch_Site="cross-site"),
            "script": await ask(client, UI + "js/lib/require.min.js?v=3"),
            # The controller's answers need proof that this site asked.
            "stat-bare": await ask(client, stat),
            "stat-same-origin": await ask(client, stat, Sec_Fetch_Site="same-origin"),
            "stat-same-site": await ask(client, stat, Sec_Fetch_Site="same-site"),
            "stat-referer": await ask(client, stat, Referer=BASE + UI),
            "stat-referer-evil": await ask(client, stat, Referer=EVIL + UI),
            "reset-cross-site": await ask(client, UI + "historyreset", Sec_Fetch_Site="none"),
            "learn": await ask(client, UI + "learnspam", "POST", Origin=BASE),
            "learn-evil": await ask(client, UI + "learnspam", "POST", Origin=EVIL),
            "learn-null": await ask(client, UI + "learnspam", "POST", Origin="null"),
            "learn-sibling": await ask(
                client, UI + "learnspam", "POST", Origin="https://other.mailu.io"
            ),
            "learn-bare": await ask(client, UI + "learnspam", "POST"),
            "learn-evil-referer": await ask(
                client, UI + "learnspam", "POST", Origin=EVIL, Referer=BASE + UI
            ),
            "post-to-a-file": await ask(client, UI + "index.html", "POST"),
            "head": await ask(client, method="HEAD"),
            "put": await ask(client, UI + "savemap", "PUT", Origin=BASE),
            # A URI that is not the interface's is treated as its page.
            "elsewhere": await ask(client, "/admin/account"),
        }
        return {name: answer.status_code for name, answer in answers.items()}

    assert browse(gate, BOSS, scenario) == {
        "page": 204,
        "page-cross-site": 204,
        "script": 204,
        "stat-bare": 403,
        "stat-same-origin": 204,
        "stat-same-site": 403,
        "stat-referer": 204,
        "stat-referer-evil": 403,
        "reset-cross-site": 403,
        "learn": 204,
        "learn-evil": 403,
        "learn-null": 403,
        "learn-sibling": 403,
        "learn-bare": 403,
        "learn-evil-referer": 403,
        "post-to-a-file": 403,
        "head": 403,
        "put": 403,
        "elsewhere": 204,
    }


@pytest.mark.parametrize("who", [MGR, PLAIN])
def test_managers_and_users_are_refused(gate: GateHarness, who: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[int]:
        return [
            (await ask(client)).status_code,
            (await ask(client, UI + "learnspam", "POST", Origin=BASE)).status_code,
        ]

    assert browse(gate, who, scenario) == [403, 403]


def test_signed_out_is_sent_to_sign_in_and_back(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await ask(client, UI + "stat?x=1&y=2", Sec_Fetch_Site="same-origin")

    answer = browse(gate, None, scenario)
    assert answer.status_code == 401
    assert answer.headers["x-roost-signin"] == "/sso/login?url=/admin/antispam/stat%3Fx%3D1%26y%3D2"


def test_a_session_waiting_for_its_second_factor_is_not_signed_in(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, int]:
        # The harness signed in with the password: the code step is still due.
        waiting = await client.get("/admin/account")
        assert waiting.status_code == 303 and "/sso/login" in waiting.headers["location"]
        return await ask(client), (await client.get("/admin/webui_antispam")).status_code

    answer, page = browse(gate, TWO_STEP, scenario)
    assert answer.status_code == 401
    assert answer.headers["x-roost-signin"] == "/sso/login?url=/admin/antispam/"
    assert page == 303


def test_a_forced_password_change_comes_first(gate: GateHarness) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await ask(client)

    answer = browse(gate, FLAGGED, scenario)
    assert answer.status_code == 401
    assert answer.headers["x-roost-signin"] == "/sso/pw_change"


def test_a_session_whose_password_changed_elsewhere_is_over(gate: GateHarness) -> None:
    from roost.store import work
    from roost.store.entities import user as users

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        before = (await ask(client)).status_code
        with work.change(gate.settings) as db:
            users.set_password(db, MOVED, PASSWORD)  # a new hash of the same password
        request_reload(gate.layout)
        return [before, (await ask(client)).status_code]

    assert browse(gate, MOVED, scenario) == [204, 401]


def test_the_helper_page_and_the_sidebar_link_are_for_global_admins(gate: GateHarness) -> None:
    async def admin(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.get("/admin/webui_antispam"), await client.get("/admin/client")

    page, other = browse(gate, BOSS, admin)
    assert page.status_code == 200
    assert f'href="{UI}"' in page.text and 'target="_blank"' in page.text
    assert 'href="/admin/webui_antispam">Antispam</a>' in other.text

    async def user(client: httpx.AsyncClient) -> tuple[int, str]:
        page = await client.get("/admin/webui_antispam")
        return page.status_code, (await client.get("/admin/client")).text

    for who in (MGR, PLAIN):
        status, text = browse(gate, who, user)
        assert status == 403
        assert "webui_antispam" not in text
