"""nginx's side of Rspamd's web interface at WEB_ADMIN/antispam/: the guarded location, the
internal auth_request location, the sign-in redirect, headers and CSP (rendered and checked
by ``nginx -t``); and the controller socket Rspamd opens for nginx."""

from __future__ import annotations

import base64
import grp
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.layout import Layout
from roost.services.nginx import service as nginx_service
from roost.services.rspamd import RspamdService
from roost.web.admin import antispam
from tests.unit.test_services_nginx import block, directives
from tests.unit.test_services_postfix_support import make_settings, roost_root
from tests.unit.test_web_nginx import ADDRESS, rendered, servers


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def location(server: str, opening: str) -> list[str]:
    return directives(block(server, opening))


def https_server(text: str) -> str:
    http = block(text, "http {")
    marker = f"listen {ADDRESS}:443"
    start = http.rindex("server {", 0, http.index(marker))
    return block(http[start:], "server {")


def test_the_interface_is_guarded_by_the_web_application(root: Path) -> None:
    text = rendered(root)
    server = https_server(text)
    socket = root / "run" / "rspamd-web" / "controller.sock"
    ui = location(server, "location /admin/antispam/ {")
    assert "auth_request /admin/antispam-auth;" in ui
    assert f"proxy_pass http://unix:{socket}:/;" in ui
    assert "limit_except GET POST { deny all; }" in " ".join(ui)
    assert "error_page 401 = @roost_antispam_signin;" in ui
    assert "auth_request_set $roost_signin $upstream_http_x_roost_signin;" in ui
    # Neither the session cookie, a password nor the client's address reaches Rspamd.
    for header in ("Cookie", "Password", "X-Real-IP", "X-Forwarded-For"):
        assert f'proxy_set_header {header} "";' in ui
    assert "proxy_hide_header Access-Control-Allow-Origin;" in ui
    # add_header here replaces the server's: every security header is repeated.
    for line in (
        'add_header Strict-Transport-Security "max-age=31536000" always;',
        'add_header X-Frame-Options "SAMEORIGIN" always;',
        'add_header X-Content-Type-Options "nosniff" always;',
        'add_header X-Permitted-Cross-Domain-Policies "none" always;',
        'add_header Referrer-Policy "same-origin" always;',
        "add_header Set-Cookie $roost_session_cookie;",
    ):
        assert line in ui
    csp = next(x for x in ui if x.startswith("add_header Content-Security-Policy"))
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert "'unsafe-inline'" not in re.search(r"script-src [^;]*", csp).group(0)  # type: ignore[union-attr]
    assert "frame-ancestors 'self'" in csp

    auth = location(server, "location = /admin/antispam-auth {")
    assert "internal;" in auth
    assert "proxy_pass http://roost_web;" in auth
    assert "proxy_pass_request_body off;" in auth
    for line in (
        "proxy_set_header X-Original-Method $request_method;",
        "proxy_set_header X-Original-URI $request_uri;",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert line in auth
    assert location(server, "location @roost_antispam_signin {") == [
        "location @roost_antispam_signin {",
        "return 302 $roost_signin;",
        "}",
    ]
    # Port 80 only redirects under TLS: no interface there.
    assert "antispam" not in " ".join(servers(text)[80])


def test_paths_follow_web_admin_and_agree_with_the_web_application(root: Path) -> None:
    assert nginx_service.ANTISPAM_UI == antispam.UI_PATH
    assert nginx_service.ANTISPAM_AUTH == antispam.AUTH_PATH
    https = " ".join(servers(rendered(root, WEB_ADMIN="/manage"))[443])
    assert "location /manage/antispam/ {" in https
    assert "location = /manage/antispam-auth {" in https


def test_notls_has_it_on_80_without_hsts(root: Path) -> None:
    plain = servers(rendered(root, TLS_FLAVOR="notls"))[80]
    joined = " ".join(plain)
    assert "location /admin/antispam/ {" in joined
    assert "Strict-Transport-Security" not in joined


def test_the_csp_allows_exactly_the_pages_inline_scripts_by_hash(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text('<p>x</p><script>one();</script><script src="./js/a.js"></script>')
    digest = base64.b64encode(hashlib.sha256(b"one();").digest()).decode()
    csp = nginx_service.antispam_csp(page)
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert "script-src 'self';" in nginx_service.antispam_csp(tmp_path / "missing.html")


def test_no_admin_pages_no_interface(root: Path) -> None:
    text = rendered(root, WEB_ADMIN="", API=True, API_TOKEN="x" * 32)
    assert "antispam" not in text


def test_rspamd_opens_a_controller_socket_for_nginx_only(root: Path) -> None:
    layout = Layout(make_settings(root, ADDRESS))
    service = RspamdService(layout)
    service.render()  # rspamadm configtest checks it
    socket = layout.rspamd_web_socket
    assert socket == root / "run" / "rspamd-web" / "controller.sock"
    conf = directives(service.conf.read_text())
    assert f'bind_socket = "{socket} mode=0660 owner=_rspamd group=www-data";' in conf
    info = socket.parent.stat()
    assert info.st_mode & 0o777 == 0o750
    assert (info.st_uid, info.st_gid) == (0, grp.getgrnam("www-data").gr_gid)
