"""nginx in front of the web daemon: paths, headers, TLS flavours, WEBROOT_REDIRECT; and the
web service itself (enabled, socket directory, command)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roost import tls
from roost.layout import Layout
from roost.services.nginx import NginxService
from roost.services.web import WebService
from roost.services.web.service import REDIS_GROUP, USER, web_enabled
from tests.unit.test_services_nginx import block, directives
from tests.unit.test_services_postfix_support import make_settings, roost_root

ADDRESS = "127.0.21.31"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def rendered(root: Path, **values: Any) -> str:
    layout = Layout(make_settings(root, ADDRESS, **values))
    tls.ensure(layout)
    service = NginxService(layout)
    service.render()  # nginx -t checks it
    return service.conf.read_text()


def servers(text: str) -> dict[int, list[str]]:
    """Directive lines of the HTTP server blocks, by port."""
    http = block(text, "http {")
    result = {}
    for port in (80, 443):
        marker = f"listen {ADDRESS}:{port}"
        if marker in http:
            start = http.rindex("server {", 0, http.index(marker))
            result[port] = directives(block(http[start:], "server {"))
    return result


def test_cert_proxies_the_web_paths_on_443_and_redirects_80(root: Path) -> None:
    text = rendered(root)
    socket = root / "run" / "web" / "web.sock"
    assert f"server unix:{socket};" in directives(block(text, "upstream roost_web"))
    by_port = servers(text)
    https = " ".join(by_port[443])
    for path in ("= /admin", "/admin/", "/sso/", "/static/", "/.well-known/autoconfig/"):
        assert f"location {path} {{ proxy_pass http://roost_web; }}" in https
    for path in ("/mail/config-v1.1.xml", "/apple", "/apple.mobileconfig", "/mobileconfig"):
        assert f"location = {path} {{ proxy_pass http://roost_web; }}" in https
    assert "location ~* ^/autodiscover/ { proxy_pass http://roost_web; }" in https
    assert "/api" not in https  # API is off by default
    # The client's address is nginx's own, never a header the client sent.
    for line in (
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        'add_header Strict-Transport-Security "max-age=31536000" always;',
        'add_header X-Frame-Options "SAMEORIGIN" always;',
        "proxy_hide_header X-Frame-Options;",
    ):
        assert line in by_port[443]
    assert "$proxy_add_x_forwarded_for" not in text
    plain = " ".join(by_port[80])
    assert "location /.well-known/ { proxy_pass http://roost_web; }" in plain
    assert "location / { return 301 https://$host$request_uri; }" in plain
    assert "/admin" not in plain and "/sso" not in plain
    assert "location / {" not in https  # WEBROOT_REDIRECT is empty: 404


def test_notls_serves_the_web_on_80(root: Path) -> None:
    by_port = servers(rendered(root, TLS_FLAVOR="notls"))
    assert 443 not in by_port
    plain = " ".join(by_port[80])
    assert "location /sso/ { proxy_pass http://roost_web; }" in plain
    assert "return 301" not in plain
    assert "Strict-Transport-Security" not in plain


def test_api_and_webroot_redirect(root: Path) -> None:
    by_port = servers(rendered(root, API=True, WEB_API="/rest", WEBROOT_REDIRECT="/admin"))
    https = " ".join(by_port[443])
    assert "location /rest/ { proxy_pass http://roost_web; }" in https
    assert "location / { return 302 /admin; }" in https


def test_webroot_redirect_none_leaves_location_slash_to_overrides(root: Path) -> None:
    https = " ".join(servers(rendered(root, WEBROOT_REDIRECT="none"))[443])
    assert "location / {" not in https


def test_no_web_no_upstream_and_no_daemon(root: Path) -> None:
    settings = make_settings(root, ADDRESS, WEB_ADMIN="", API=False)
    assert not web_enabled(settings)
    text = rendered(root, WEB_ADMIN="", API=False)
    assert "roost_web" not in text
    assert web_enabled(make_settings(root, ADDRESS, WEB_ADMIN="", API=True))


def test_web_service_prepares_a_socket_directory_only_nginx_can_enter(root: Path) -> None:
    layout = Layout(make_settings(root, ADDRESS))
    service = WebService(layout)
    layout.web_socket.parent.mkdir(parents=True)
    layout.web_socket.write_text("stale")
    service.render()
    directory = layout.web_socket.parent
    info = directory.stat()
    assert stat.S_IMODE(info.st_mode) == 0o750
    assert info.st_gid == grp.getgrnam("www-data").gr_gid
    if os.geteuid() == 0:
        # The web makes its socket there as its own user.
        assert info.st_uid == pwd.getpwnam(USER).pw_uid
    assert not layout.web_socket.exists()
    command = service.command()
    assert command[0].endswith("/setpriv") and command[1:3] == [
        f"--reuid={USER}",
        f"--regid={USER}",
    ]
    assert f"--groups={REDIS_GROUP}" in command and "--clear-groups" not in command
    assert "--no-new-privs" in command and "--bounding-set=-all" in command
    assert command[-4:] == [sys.executable, "-P", "-m", "roost.web"]
    assert service.readiness().unix_sockets == (layout.web_socket,)
    assert set(service.after) == {"redis", "gate"}
    assert service.environment()["WEB_ADMIN"] == "/admin"


#: What the confined process reports of itself: uid, gid, groups, capabilities, no_new_privs.
_PROBE = """
import os
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(os.getuid(), os.geteuid(), os.getgid(), sorted(os.getgroups()))
print(status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip())
print(status["NoNewPrivs"].strip())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can start a process as another user")
def test_the_web_process_runs_as_its_own_user_without_capabilities(root: Path) -> None:
    """The runner's command, its program swapped for a probe: the process it starts is the
    web user's, in its own group and Redis's only, with no capability at all."""
    service = WebService(Layout(make_settings(root, ADDRESS)))
    service.render()
    command = service.command()
    probe = [*command[: command.index("--") + 1], sys.executable, "-c", _PROBE]
    out = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=30).stdout
    ids, caps, no_new_privs = out.splitlines()
    account = pwd.getpwnam(USER)
    groups = [grp.getgrnam(REDIS_GROUP).gr_gid]  # the only supplementary group
    assert ids == f"{account.pw_uid} {account.pw_uid} {account.pw_gid} {groups}"
    assert account.pw_uid != 0 and account.pw_shell.endswith("nologin")
    assert caps == "0000000000000000 0000000000000000 0000000000000000"
    assert no_new_privs == "1"
