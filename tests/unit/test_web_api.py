"""The REST API v1 in-process (FastAPI's TestClient) on a real temporary SQLite store:
the token rule, each resource's operations with Mailu's status codes and bodies, and the
rule book answering the API with the CLI's messages."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from roost.gate.limiter import AuthLimiter
from roost.layout import Layout
from roost.settings import SettingsError
from roost.store.models import Alias, Domain, Token, User
from roost.web.api import build_api
from tests.unit.test_cli_support import Stack, error_line
from tests.unit.test_web_api_support import TOKEN, api_stack

CLI_ERROR = "roost: error: "


@pytest.fixture
def api(tmp_path: Path) -> tuple[Stack, TestClient]:
    return api_stack(tmp_path)


def ok(response, message: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    body = response.json()
    if message is not None:
        assert body == {"code": 200, "message": message}
    return body


def refused(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    if "code" in body:
        assert body["code"] == status
    return body["message"]


def seed(client: TestClient) -> None:
    ok(client.post("/domain", json={"name": "example.com"}))
    ok(client.post("/user", json={"email": "joe@example.com", "raw_password": "pw-123456"}))


# -- the token ---------------------------------------------------------------------------


def test_no_header_is_401(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    response = client.get("/domain", headers={"Authorization": ""})
    # An empty header is a wrong token; no header at all is a 401.
    assert response.status_code == 403
    del client.headers["Authorization"]
    response = client.get("/domain")
    assert response.status_code == 401
    assert response.json() == {"message": "A valid Authorization header is mandatory"}


def test_wrong_token_is_403_and_logged(
    api: tuple[Stack, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = api
    with caplog.at_level(logging.INFO, logger="roost.web.api"):
        response = client.get("/domain", headers={"Authorization": "Bearer " + "f" * 32})
    assert response.status_code == 403
    assert response.json() == {"message": "Invalid API token"}
    assert "Invalid API token provided by" in caplog.text
    assert "f" * 32 not in caplog.text


def test_token_with_or_without_bearer(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    assert client.get("/domain").status_code == 200
    assert client.get("/domain", headers={"Authorization": TOKEN}).status_code == 200
    assert client.get("/domain", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert client.get("/domain", headers={"Authorization": TOKEN[:-1]}).status_code == 403


def test_token_checked_before_the_body(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    del client.headers["Authorization"]
    response = client.post(
        "/domain", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401


def test_wrong_tokens_spend_the_network_budget(tmp_path: Path) -> None:
    _, client = api_stack(tmp_path, "AUTH_RATELIMIT_USER=3/day\n")
    for n in range(3):
        assert (
            client.get("/domain", headers={"Authorization": f"wrong-token-{n:020d}"}).status_code
            == 403
        )
    # The budget is spent: even the right token is refused from this network now...
    assert client.get("/domain").status_code == 429
    assert client.get("/domain").json() == {
        "message": "Too many attempts from your IP (rate-limit)"
    }


def test_good_token_network_stays_open(tmp_path: Path) -> None:
    _, client = api_stack(tmp_path, "AUTH_RATELIMIT_USER=3/day\n")
    assert client.get("/domain").status_code == 200  # trusts this network
    for n in range(5):
        headers = {"Authorization": f"wrong-token-{n:020d}", "X-Real-IP": "198.51.100.7"}
        client.get("/domain", headers=headers)
    assert client.get("/domain", headers={"X-Real-IP": "198.51.100.8"}).status_code == 429
    assert client.get("/domain").status_code == 200


def test_openapi_document_is_public(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    del client.headers["Authorization"]
    for path in ("/openapi.json", "/swagger.json"):
        document = client.get(path).json()
        assert document["openapi"].startswith("3.")
        assert "/tokenuser/{email}" in document["paths"]
        assert document["components"]["securitySchemes"]["Bearer"]["name"] == "Authorization"
        assert "422" not in str(document)


def test_api_off_answers_404(tmp_path: Path, api: tuple[Stack, TestClient]) -> None:
    stack, _ = api
    for changes in ({"API": False}, {"API_TOKEN": ""}):
        settings = dataclasses.replace(stack.settings, **changes)
        client = TestClient(build_api(settings))
        response = client.get("/domain", headers={"Authorization": TOKEN})
        assert response.status_code == 404


@pytest.mark.parametrize("token", ["short", "changeme", "a token with spaces in it!"])
def test_weak_token_refused_at_start(api: tuple[Stack, TestClient], token: str) -> None:
    stack, _ = api
    settings = dataclasses.replace(stack.settings, API_TOKEN=token)
    with pytest.raises(SettingsError) as caught:
        build_api(settings)
    assert token not in str(caught.value)
    assert "openssl rand -hex 16" in str(caught.value)


def test_gate_that_fails_to_reload_is_a_warning(
    api: tuple[Stack, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A gate socket that hangs up without answering: the change stays committed."""
    stack, client = api
    path = Layout(stack.settings).gate_control
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def hang_up() -> None:
        connection, _ = server.accept()
        connection.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="roost.web.api"):
            ok(client.post("/domain", json={"name": "example.com"}))
    finally:
        thread.join(5)
        server.close()
    assert "the gate at" in caplog.text and "control.sock" in caplog.text
    with stack.session() as session:
        assert session.get(Domain, "example.com") is not None


# -- domains -----------------------------------------------------------------------------


def test_domain_crud(api: tuple[Stack, TestClient]) -> None:
    stack, client = api
    ok(
        client.post(
            "/domain",
            json={
                "name": "Bücher.Example",
                "max_users": 2,
                "comment": "books",
                "alternatives": ["books.example"],
            },
        ),
        "Domain bücher.example has been created",
    )
    with stack.session() as session:
        domain = session.get(Domain, "xn--bcher-kva.example")
        assert domain is not None and domain.max_users == 2 and domain.comment == "books"
    got = ok(client.get("/domain/xn--bcher-kva.example"))
    assert got["name"] == "bücher.example"
    assert got["alternatives"] == ["books.example"]
    assert got["dns_mx"] == "xn--bcher-kva.example. 600 IN MX 10 mail.example.com."
    assert any("_imaps._tcp.xn--bcher-kva.example" in r for r in got["dns_autoconfig"])
    assert "dns_dkim" not in got
    assert [d["name"] for d in ok(client.get("/domain"))] == ["bücher.example"]
    ok(
        client.patch(
            "/domain/bücher.example", json={"max_quota_bytes": 5000, "signup_enabled": True}
        ),
        "Domain bücher.example has been updated",
    )
    got = ok(client.get("/domain/bücher.example"))
    assert (got["max_quota_bytes"], got["signup_enabled"], got["max_users"]) == (5000, True, 2)
    ok(client.delete("/domain/bücher.example"), "Domain bücher.example has been deleted")
    assert (
        refused(client.get("/domain/bücher.example"), 404) == "Domain bücher.example does not exist"
    )


def test_domain_refusals(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    seed(client)
    assert refused(client.post("/domain", json={"name": "example.com"}), 409) == (
        "'example.com' is already a domain"
    )
    ok(client.post("/alternative", json={"name": "alt.example", "domain": "example.com"}))
    assert "alternative domain" in refused(
        client.post("/domain", json={"name": "alt.example"}), 409
    )
    refused(
        client.post("/domain", json={"name": "x", "alternatives": ["a.example", "A.example"]}), 409
    )
    refused(client.post("/domain", json={"name": "bad_name!"}), 400)
    assert refused(client.get("/domain/bad_name!"), 400)
    refused(client.patch("/domain/nowhere.example", json={"comment": "x"}), 404)
    body = client.post("/domain", json={"name": "y.example", "max_users": -2}).json()
    assert body["message"] == "Input payload validation failed"
    assert "max_users" in body["errors"]
    assert client.post("/domain", json={"name": "y.example", "max_users": "3"}).status_code == 400
    assert (
        client.post(
            "/domain", content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert client.post("/domain", json={"name": "y.example", "max_users": 2**70}).status_code == 400


def test_managers(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    seed(client)
    ok(
        client.post("/domain/example.com/manager", json={"user_email": "joe@example.com"}),
        "User joe@example.com has been added as manager of the domain example.com ",
    )
    refused(client.post("/domain/example.com/manager", json={"user_email": "joe@example.com"}), 409)
    refused(client.post("/domain/example.com/manager", json={"user_email": "ann@example.com"}), 404)
    assert ok(client.get("/domain/example.com/manager")) == {"managers": ["joe@example.com"]}
    ok(
        client.get("/domain/example.com/manager/joe@example.com"),
        "User joe@example.com is a manager of the domain example.com",
    )
    assert ok(client.get("/domain/example.com"))["managers"] == ["joe@example.com"]
    ok(
        client.delete("/domain/example.com/manager/joe@example.com"),
        "User joe@example.com has been removed as a manager of the domain example.com ",
    )
    refused(client.get("/domain/example.com/manager/joe@example.com"), 404)


def test_alternatives(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    seed(client)
    ok(
        client.post("/alternative", json={"name": "alt.example", "domain": "example.com"}),
        "Alternative alt.example for domain example.com has been created",
    )
    assert ok(client.get("/alternative")) == [{"name": "alt.example", "domain": "example.com"}]
    assert ok(client.get("/alternative/alt.example")) == {
        "name": "alt.example",
        "domain": "example.com",
    }
    refused(client.post("/alternative", json={"name": "alt.example", "domain": "example.com"}), 409)
    refused(
        client.post("/alternative", json={"name": "new.example", "domain": "none.example"}), 404
    )
    ok(
        client.delete("/alternative/alt.example"),
        "Alternative alt.example for domain example.com has been deleted",
    )
    refused(client.get("/alternative/alt.example"), 404)


# -- users -------------------------------------------------------------------------------


def test_user_crud_all_fields(api: tuple[Stack, TestClient]) -> None:
    stack, client = api
    ok(client.post("/domain", json={"name": "example.com"}))
    fields = {
        "email": "Ann@Example.com",
        "raw_password": "secret-pw-1",
        "comment": "c",
        "quota_bytes": 123456,
        "global_admin": True,
        "enabled": True,
        "enable_imap": False,
        "enable_pop": False,
        "allow_spoofing": True,
        "forward_enabled": True,
        "forward_destination": ["out@elsewhere.example"],
        "forward_keep": False,
        "reply_enabled": True,
        "reply_subject": "Away",
        "reply_body": "Back Monday",
        "reply_startdate": "2030-01-01",
        "reply_enddate": "2030-02-01",
        "displayed_name": "Ann",
        "spam_enabled": False,
        "spam_mark_as_read": False,
        "spam_threshold": 42,
        "change_pw_next_login": True,
    }
    ok(client.post("/user", json=fields), "User ann@example.com has been created")
    got = ok(client.get("/user/ann@example.com"))
    assert "password" not in got
    for key, value in fields.items():
        if key not in ("email", "raw_password"):
            assert got[key] == value, key
    assert got["email"] == "ann@example.com" and got["quota_bytes_used"] == 0
    with stack.session() as session:
        user = session.get(User, "ann@example.com")
        assert user is not None and user.password.startswith("$argon2id$")
        old_hash = user.password
    ok(
        client.patch(
            "/user/ann@example.com", json={"raw_password": "new-pw-2", "enable_imap": True}
        ),
        "User ann@example.com has been updated",
    )
    with stack.session() as session:
        user = session.get(User, "ann@example.com")
        assert user is not None and user.password != old_hash and user.enable_imap
        assert user.change_pw_next_login  # kept as it was
    listed = ok(client.get("/user"))
    assert [u["email"] for u in listed] == ["ann@example.com"]
    assert ok(client.get("/domain/example.com/users"))[0]["email"] == "ann@example.com"
    ok(client.delete("/user/ann@example.com"), "User ann@example.com has been deleted")
    refused(client.get("/user/ann@example.com"), 404)
    with stack.session() as session:
        assert session.get(User, "ann@example.com") is None  # deleted, not disabled


def test_user_refusals(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    seed(client)
    refused(client.post("/user", json={"email": "joe@example.com", "raw_password": "x"}), 409)
    refused(client.post("/user", json={"email": "a@none.example", "raw_password": "x"}), 404)
    refused(client.post("/user", json={"email": "no-at-sign", "raw_password": "x"}), 400)
    refused(client.post("/user", json={"email": "a b@example.com", "raw_password": "x"}), 400)
    assert client.post("/user", json={"email": "a@example.com"}).status_code == 400
    message = refused(
        client.post(
            "/user", json={"email": "b@example.com", "raw_password": "x", "reply_startdate": "July"}
        ),
        400,
    )
    assert "YYYY-MM-DD" in message
    message = refused(client.patch("/user/joe@example.com", json={"forward_enabled": True}), 400)
    assert message == "'joe@example.com' has no forward destination: name one or more"
    refused(client.patch("/user/nobody@example.com", json={"comment": "x"}), 404)
    # A refused create leaves nothing behind.
    assert [u["email"] for u in ok(client.get("/user"))] == ["joe@example.com"]


def test_max_users_is_409(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    ok(client.post("/domain", json={"name": "small.example", "max_users": 1}))
    ok(client.post("/user", json={"email": "a@small.example", "raw_password": "pw"}))
    message = refused(
        client.post("/user", json={"email": "b@small.example", "raw_password": "pw"}), 409
    )
    assert message == "domain 'small.example' already has its maximum of 1 users"


def test_quota_above_cap_has_the_cli_message(api: tuple[Stack, TestClient]) -> None:
    stack, client = api
    assert stack.roost("domain", "example.com", "-q", "1000000").exit_code == 0
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    line = error_line(stack.roost("quota", "joe@example.com", "2000000"))
    via_cli = line[len(CLI_ERROR) :]
    via_api = refused(client.patch("/user/joe@example.com", json={"quota_bytes": 2000000}), 400)
    assert (
        via_api
        == via_cli
        == (
            "quota for 'joe@example.com': 2000000 bytes is above the 1000000 bytes domain "
            "'example.com' allows (its max_quota_bytes)"
        )
    )
    via_create = refused(
        client.post(
            "/user", json={"email": "ann@example.com", "raw_password": "pw", "quota_bytes": 0}
        ),
        400,
    )
    assert "unlimited is above the 1000000 bytes" in via_create
    assert [u["email"] for u in ok(client.get("/user"))] == ["joe@example.com"]


def test_local_part_rule_as_in_the_cli(api: tuple[Stack, TestClient]) -> None:
    stack, client = api
    seed(client)
    line = error_line(stack.roost("user", "a/b", "example.com", "pw"))
    via_api = refused(
        client.post("/user", json={"email": "a/b@example.com", "raw_password": "pw"}), 400
    )
    assert via_api == line[len(CLI_ERROR) :]


# -- aliases -----------------------------------------------------------------------------


def test_alias_crud(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    seed(client)
    ok(
        client.post(
            "/alias",
            json={
                "email": "info@example.com",
                "destination": ["joe@example.com"],
                "comment": "front desk",
            },
        ),
        "Alias info@example.com to destination(s) ['joe@example.com'] has been created",
    )
    got = ok(client.get("/alias/info@example.com"))
    assert got["destination"] == ["joe@example.com"] and got["comment"] == "front desk"
    assert got["wildcard"] is False and "hostname" not in got
    ok(
        client.patch("/alias/info@example.com", json={"destination": ["x@elsewhere.example"]}),
        "Alias info@example.com has been updated",
    )
    assert ok(client.get("/alias/info@example.com"))["destination"] == ["x@elsewhere.example"]
    ok(
        client.post(
            "/alias",
            json={"email": "%@example.com", "destination": ["joe@example.com"], "wildcard": True},
        )
    )
    assert [a["email"] for a in ok(client.get("/alias/destination/example.com"))] == [
        "%@example.com",
        "info@example.com",
    ]
    assert ok(client.get("/alias/domains/available")) == ["example.com"]
    assert len(ok(client.get("/alias"))) == 2
    ok(client.delete("/alias/%@example.com"), "Alias %@example.com has been deleted")
    ok(client.delete("/alias/info@example.com"))
    refused(client.get("/alias/info@example.com"), 404)
    assert ok(client.get("/alias/destination/example.com")) == []
    refused(client.get("/alias/destination/none.example"), 404)


def test_alias_refusals(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    seed(client)
    refused(
        client.post("/alias", json={"email": "joe@example.com", "destination": ["a@b.example"]}),
        409,
    )
    refused(
        client.post("/alias", json={"email": "x@none.example", "destination": ["a@b.example"]}), 404
    )
    assert refused(
        client.post("/alias", json={"email": "x@example.com", "destination": []}), 400
    ) == ("an alias needs at least one destination address")
    ok(client.patch("/domain/example.com", json={"max_aliases": 0}))
    refused(
        client.post("/alias", json={"email": "y@example.com", "destination": ["a@b.example"]}), 409
    )


# -- relays and tokens -------------------------------------------------------------------


def test_relay_crud(api: tuple[Stack, TestClient]) -> None:
    _, client = api
    ok(
        client.post("/relay", json={"name": "relayed.example", "smtp": "mx.relayed.example:25"}),
        "Relayed domain relayed.example has been created",
    )
    assert ok(client.get("/relay")) == [
        {"name": "relayed.example", "smtp": "mx.relayed.example:25", "comment": ""}
    ]
    ok(client.patch("/relay/relayed.example", json={"comment": "partner"}))
    assert ok(client.get("/relay/relayed.example"))["comment"] == "partner"
    refused(client.post("/relay", json={"name": "relayed.example"}), 409)
    refused(client.patch("/relay/relayed.example", json={"smtp": "bad host name:99999"}), 400)
    ok(client.delete("/relay/relayed.example"), "Relayed domain relayed.example has been deleted")
    assert refused(client.get("/relay/relayed.example"), 404) == (
        "Relayed domain relayed.example cannot be found"
    )


def test_tokens(api: tuple[Stack, TestClient]) -> None:
    stack, client = api
    seed(client)
    made = ok(
        client.post(
            "/token",
            json={"email": "joe@example.com", "comment": "phone", "AuthorizedIP": ["192.0.2.1"]},
        )
    )
    assert len(made["token"]) == 32 and made["AuthorizedIP"] == ["192.0.2.1/32"]
    token_id = made["id"]
    with stack.session() as session:
        token = session.get(Token, token_id)
        assert token is not None and made["token"] not in token.password
    listed = ok(client.get("/token"))
    assert listed[0]["id"] == str(token_id) and "token" not in listed[0]
    assert ok(client.get("/tokenuser/joe@example.com"))[0]["comment"] == "phone"
    ok(client.post("/tokenuser/joe@example.com", json={"comment": "laptop"}))
    got = ok(client.get(f"/token/{token_id}"))
    assert got["id"] == token_id and got["Last edit"] == "None"
    ok(
        client.patch(f"/token/{token_id}", json={"AuthorizedIP": ["2001:db8::/32"]}),
        f"Token with id {token_id} has been updated",
    )
    assert ok(client.get(f"/token/{token_id}"))["AuthorizedIP"] == ["2001:db8::/32"]
    refused(client.patch(f"/token/{token_id}", json={"AuthorizedIP": ["not-an-ip"]}), 400)
    ok(client.delete(f"/token/{token_id}"), f"Token with id {token_id} has been deleted")
    assert refused(client.get(f"/token/{token_id}"), 404) == (
        f"Record cannot be found for id {token_id} or invalid id provided"
    )
    refused(client.post("/token", json={"email": "nobody@example.com"}), 404)
    assert client.get("/token/abc").status_code == 400


def test_store_not_initialised_is_503(tmp_path: Path) -> None:
    from tests.unit.test_cli_support import make_stack

    stack = make_stack(tmp_path, f"API=true\nAPI_TOKEN={TOKEN}\n", migrate=False)
    limiter = AuthLimiter(stack.settings, Layout(stack.settings).redis_socket, use_redis=False)
    client = TestClient(
        build_api(stack.settings, limiter=limiter), headers={"Authorization": TOKEN}
    )
    assert client.get("/user").status_code == 503


def test_alias_model_untouched_by_reads(api: tuple[Stack, TestClient]) -> None:
    stack, client = api
    seed(client)
    ok(client.post("/alias", json={"email": "a@example.com", "destination": ["joe@example.com"]}))
    with stack.session() as session:
        assert session.get(Alias, "a@example.com") is not None


def test_user_list_follows_changes_and_quota_usage(api: tuple[Stack, TestClient]) -> None:
    """The kept list answer is rebuilt after an API change, a CLI change, and Dovecot's
    quota usage report (which does not bump the store generation)."""
    from roost.store.db import Store
    from roost.store.entities.user import record_quota_usage

    stack, client = api
    seed(client)
    assert ok(client.get("/user"))[0]["comment"] == ""
    ok(client.patch("/user/joe@example.com", json={"comment": "via api"}))
    assert ok(client.get("/user"))[0]["comment"] == "via api"
    assert stack.roost("user", "ann", "example.com", "pw").exit_code == 0
    assert [u["email"] for u in ok(client.get("/user"))] == ["ann@example.com", "joe@example.com"]
    store = Store.from_settings(stack.settings)
    try:
        record_quota_usage(store, {"joe@example.com": 4242})
    finally:
        store.dispose()
    assert ok(client.get("/user"))[1]["quota_bytes_used"] == 4242


def test_mounted_under_web_api(api: tuple[Stack, TestClient]) -> None:
    """Mounted as roost/web/app.py mounts it: the token rule and the document's servers."""
    from fastapi import FastAPI

    stack, client = api
    outer = FastAPI()
    outer.mount(stack.settings.WEB_API + "/v1", client.app)
    mounted = TestClient(outer)
    document = mounted.get("/api/v1/openapi.json").json()
    assert document["servers"] == [{"url": "/api/v1"}]
    assert mounted.get("/api/v1/domain").status_code == 401
    assert mounted.get("/api/v1/domain", headers={"Authorization": TOKEN}).status_code == 200
