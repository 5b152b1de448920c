"""WEBDAV=radicale: Radicale's configuration, its socket's and storage's owners, nginx's
block for it (checked with ``nginx -t``), and the guard in front of Radicale's application.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from radicale import config
from test_services_nginx import block, directives
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout
from roost.runner.stack import enabled_services
from roost.services.nginx import NginxService
from roost.services.radicale import RadicaleService
from roost.services.radicale.server import signed_in_only
from roost.services.radicale.service import USER

ADDRESS = "127.0.50.31"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def layout_of(root: Path, **values: Any) -> Layout:
    return Layout(make_settings(root, ADDRESS, **values))


def nginx_conf(root: Path, **values: Any) -> str:
    layout = layout_of(root, **values)
    tls.ensure(layout)
    service = NginxService(layout)
    service.render()  # nginx -t included
    return service.conf.read_text()


def test_off_by_default_no_daemon_no_route(root: Path) -> None:
    layout = layout_of(root)
    assert not RadicaleService.enabled(layout.settings)
    assert "radicale" not in [service.name for service in enabled_services(layout)]
    text = nginx_conf(root)
    assert "webdav" not in text and "caldav" not in text


def test_on_nginx_waits_for_it(root: Path) -> None:
    layout = layout_of(root, WEBDAV="radicale")
    names = [service.name for service in enabled_services(layout)]
    assert names.index("radicale") < names.index("nginx")


@pytest.mark.skipif(os.geteuid() != 0, reason="the storage and socket go to Radicale's user")
def test_config_storage_and_socket(root: Path) -> None:
    layout = layout_of(root, WEBDAV="radicale", LOG_LEVEL="WARNING")
    service = RadicaleService(layout)
    service.render()
    account = pwd.getpwnam(USER)
    # Radicale reads the file itself: every option is one it knows, with these values.
    loaded = config.load([(str(service.conf), False)])
    assert loaded.get("auth", "type") == "http_x_remote_user"
    assert loaded.get("rights", "type") == "owner_only"
    assert loaded.get("storage", "type") == "multifilesystem"
    assert loaded.get("storage", "filesystem_folder") == str(root / "dav")
    assert loaded.get("server", "script_name") == "/webdav"
    assert loaded.get("logging", "level") == "warning"
    storage = (root / "dav").stat()
    assert (storage.st_uid, storage.st_mode & 0o777) == (account.pw_uid, 0o700)
    run = layout.radicale_socket.parent.stat()
    assert (run.st_uid, run.st_gid) == (account.pw_uid, grp.getgrnam("www-data").gr_gid)
    assert run.st_mode & 0o777 == 0o750
    command = service.command()
    assert command[0].endswith("/setpriv") and command[1] == f"--reuid={USER}"
    assert "--no-new-privs" in command and "--bounding-set=-all" in command
    assert command[-3:] == [
        "roost.services.radicale.server",
        f"--config={service.conf}",
        f"--socket={layout.radicale_socket}",
    ]
    assert service.readiness().unix_sockets == (layout.radicale_socket,)


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx -t runs as root")
def test_nginx_asks_the_gate_and_names_the_user_itself(root: Path) -> None:
    text = nginx_conf(root, WEBDAV="radicale")
    https = block(text, "# HTTPS, the main server")
    dav = directives(block(https, "location /webdav/ {"))
    assert "auth_request /webdav-auth;" in dav
    assert "auth_request_set $roost_dav_user $upstream_http_auth_user;" in dav
    assert f"proxy_pass http://unix:{root}/run/radicale/radicale.sock;" in dav
    # What Radicale believes is nginx's, never the client's; the password stays here.
    for line in (
        "proxy_set_header X-Remote-User $roost_dav_user;",
        'proxy_set_header Authorization "";',
        'proxy_set_header X-Script-Name "";',
    ):
        assert line in dav
    auth = directives(block(https, "location = /webdav-auth {"))
    for line in (
        "internal;",
        "proxy_method GET;",
        f"proxy_pass http://unix:{root}/run/gate-http/http.sock:/auth/basic;",
        "proxy_pass_request_body off;",
        "proxy_pass_request_headers off;",
        "proxy_set_header Authorization $http_authorization;",
        "proxy_set_header Auth-Protocol webdav;",
        "proxy_set_header Client-Ip $remote_addr;",
    ):
        assert line in auth
    for name in ("caldav", "carddav"):
        assert "return 301 /webdav/;" in directives(
            block(https, f"location = /.well-known/{name} {{")
        )
    # Port 80 only sends clients to HTTPS.
    plain = block(text, "# HTTP\n")
    assert "location /webdav/" not in plain
    assert "return 301 https://$host/webdav/;" in directives(
        block(plain, "location = /.well-known/caldav {")
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx -t runs as root")
def test_without_tls_it_is_served_on_port_80(root: Path) -> None:
    text = nginx_conf(root, WEBDAV="radicale", TLS_FLAVOR="notls")
    assert re.search(r"location /webdav/ \{", text)
    assert "https://$host/webdav/" not in text


def test_the_guard_lets_through_only_a_request_nginx_named_a_user_for() -> None:
    seen: list[dict[str, Any]] = []

    def radicale(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        start_response("207 Multi-Status", [])
        return [b"ok"]

    guarded = signed_in_only(radicale)
    statuses: list[str] = []

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        statuses.append(status)

    credentials = {"HTTP_AUTHORIZATION": "Basic YTpi", "HTTP_X_SCRIPT_NAME": "/elsewhere"}
    for environ in ({}, {"HTTP_X_REMOTE_USER": ""}, {"HTTP_X_REMOTE_USER": "a@x.test,b@x.test"}):
        assert guarded({**environ, **credentials}, start) == [
            b"no signed-in user: only nginx, after a login, reaches Radicale\n"
        ]
    assert statuses == ["403 Forbidden"] * 3 and not seen
    assert guarded({"HTTP_X_REMOTE_USER": "a@x.test", **credentials}, start) == [b"ok"]
    assert seen[0]["HTTP_X_REMOTE_USER"] == "a@x.test"
    assert "HTTP_AUTHORIZATION" not in seen[0] and "HTTP_X_SCRIPT_NAME" not in seen[0]
