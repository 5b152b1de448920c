"""nginx configuration: rendered into a temporary ROOT and checked with ``nginx -t``."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout, derived_loopback
from roost.services.base import ServiceConfigError
from roost.services.nginx import NginxService

ADDRESS = "127.0.5.30"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def rendered(root: Path, **values: Any) -> tuple[NginxService, str]:
    layout = Layout(make_settings(root, ADDRESS, **values))
    tls.ensure(layout)
    service = NginxService(layout)
    service.render()
    return service, service.conf.read_text()


def block(text: str, opening: str) -> str:
    """The text of the ``{...}`` block that starts at ``opening`` (braces balanced)."""
    start = text.index(opening)
    depth = 0
    for index in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start : index + 1]
    raise AssertionError(f"unbalanced block {opening!r}")


def directives(text: str) -> list[str]:
    """Directive lines without comments, whitespace-normalised."""
    lines = (re.sub(r"#.*", "", line).strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_cert_flavor(root: Path) -> None:
    _, text = rendered(root, MESSAGE_SIZE_LIMIT=1000)
    top = directives(text)
    run = root / "run" / "nginx"
    assert "load_module /usr/lib/nginx/modules/ngx_mail_module.so;" in top
    assert "user www-data;" in top
    assert f"pid {run}/nginx.pid;" in top
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {run}/{kind};" in top
    assert not any("/var/lib/nginx" in line for line in top)
    # nginx -t created its temporary directories for the workers' user.
    assert (run / "client_body").owner() == "www-data"

    mail = directives(block(text, "mail {"))
    # The gate's Unix socket (only root and www-data may open it), never a TCP port.
    assert f"auth_http unix:{root}/run/gate-http/http.sock:/auth/email;" in mail
    assert f"listen {ADDRESS}:25;" in mail
    for line in (
        "server_name mail.example.test;",
        "protocol smtp;",
        "smtp_auth none;",
        "starttls on;",
        "xclient on;",
        "proxy_pass_error_message on;",
        "auth_http_header Auth-Port 25;",
        'smtp_capabilities PIPELINING "SIZE 1000" 8BITMIME ENHANCEDSTATUSCODES DSN;',
        f"ssl_certificate {root}/certs/cert.pem;",
        "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;",  # TLS_PERMISSIVE
    ):
        assert line in mail

    http = block(text, "http {")
    plain = directives(block(http, "# HTTP\n"))
    assert f"listen {ADDRESS}:80;" in plain
    assert "return 301 https://$host$request_uri;" in plain
    assert not any(line.startswith("include") for line in plain)
    secure = directives(block(http, "# HTTPS"))
    assert f"listen {ADDRESS}:443 ssl http2;" in secure
    assert f'include "{root}/overrides/nginx/*.conf";' in secure
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in secure
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in secure
    assert "client_max_body_size 8389608;" in directives(http)


def test_notls_serves_plain_http_without_tls(root: Path) -> None:
    service, text = rendered(root, TLS_FLAVOR="notls")
    lines = directives(text)
    assert not any(":443" in line or "ssl" in line or "starttls" in line for line in lines)
    plain = directives(block(block(text, "http {"), "# HTTP"))
    assert f'include "{root}/overrides/nginx/*.conf";' in plain
    assert f"root {service.no_web_root};" in plain
    assert "return 301 https://$host$request_uri;" not in plain
    assert not (root / "certs").exists()


def test_ports_and_addresses(root: Path) -> None:
    _, text = rendered(root, PORTS=(25, 465), BIND_ADDRESS6="::1", TLS_PERMISSIVE=False)
    http = block(text, "http {")
    assert "server {" not in http  # neither 80 nor 443 enabled
    mail = directives(block(text, "mail {"))
    assert {f"listen {ADDRESS}:25;", "listen [::1]:25;"} <= set(mail)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in mail


def test_unlimited_message_size(root: Path) -> None:
    _, text = rendered(root, MESSAGE_SIZE_LIMIT=0)
    assert '"SIZE 0"' in text
    assert "client_max_body_size 0;" in directives(text)


def test_broken_override_names_file_and_line(root: Path) -> None:
    override = root / "overrides" / "nginx" / "broken.conf"
    override.parent.mkdir(parents=True)
    override.write_text("# fine\nlocation = /x { return 200; }\nno_such_directive on;\n")
    with pytest.raises(ServiceConfigError) as refused:
        rendered(root)
    # Only what says what and where: no time stamp, level or pid of nginx's log format.
    assert str(refused.value).endswith(f': unknown directive "no_such_directive" in {override}:3')
    assert not re.search(r"\d{4}/\d\d/\d\d", str(refused.value))


def test_an_override_may_take_the_root_location(root: Path) -> None:
    # Mailu FAQ: with WEBROOT_REDIRECT=none, overrides/nginx may define "location /".
    override = root / "overrides" / "nginx" / "website.conf"
    override.parent.mkdir(parents=True)
    override.write_text('location / {\n    return 200 "our own home page";\n}\n')
    service, text = rendered(root)
    secure = directives(block(block(text, "http {"), "# HTTPS"))
    assert "location / {" not in secure  # nothing of ours to collide with (nginx -t passed)
    assert f"root {service.no_web_root};" in secure
    assert "log_not_found off;" in secure
    assert not service.no_web_root.exists()


def test_a_bad_certificate_still_stops_nginx_t(root: Path) -> None:
    """roost.tls checks the pair once before any renderer; nginx -t is the second line."""
    layout = Layout(make_settings(root, ADDRESS))
    tls.ensure(layout)
    layout.cert_file.write_text("not a certificate\n")
    with pytest.raises(ServiceConfigError, match=f"cannot load certificate .*{layout.cert_file}"):
        NginxService(layout).render()


def test_runner_interface(root: Path) -> None:
    service = NginxService(Layout(make_settings(root, ADDRESS)))
    conf = str(root / "etc" / "nginx" / "nginx.conf")
    assert service.command() == ["nginx", "-c", conf, "-g", "daemon off; error_log stderr info;"]
    assert service.readiness().tcp == ((ADDRESS, 25),)
    assert service.stop_command() is None
    assert service.reload_command() == ["nginx", "-c", conf, "-s", "reload"]
    assert service.reload_on() == {tls.CERTIFICATE_CHANGED}
    notls = NginxService(Layout(make_settings(root, ADDRESS, TLS_FLAVOR="notls")))
    assert notls.reload_on() == frozenset()
    wildcard = NginxService(Layout(make_settings(root, "0.0.0.0")))
    # A wildcard bind is probed on the stack's own internal loopback address.
    assert wildcard.readiness().tcp == ((derived_loopback(root), 25),)


def test_command_is_accepted_by_nginx(root: Path) -> None:
    """The -g directives must not clash with the file (e.g. a second "daemon")."""
    service, _ = rendered(root)
    args = service.command()
    result = subprocess.run([args[0], "-t", *args[1:]], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def server_with(text: str, listen: str) -> list[str]:
    """The directives of the ``server`` block that holds ``listen``."""
    start = text.rindex("server {", 0, text.index(listen))
    return directives(block(text[start:], "server {"))


PROXY_SETTINGS: dict[str, Any] = {
    "PORTS": (25, 80, 443, 465, 587, 993),
    "REAL_IP_FROM": ("192.0.2.10/32", "2001:db8::/64"),
}


def test_real_ip_from_with_a_header(root: Path) -> None:
    """REAL_IP_FROM and REAL_IP_HEADER: both HTTP servers take the client from the header,
    from those proxies only; no PROXY protocol anywhere, no stream proxy."""
    _, text = rendered(root, **PROXY_SETTINGS, REAL_IP_HEADER="X-Forwarded-For")
    for opening in (f"listen {ADDRESS}:80", f"listen {ADDRESS}:443"):
        server = server_with(text, opening)
        assert "set_real_ip_from 192.0.2.10/32;" in server
        assert "set_real_ip_from 2001:db8::/64;" in server
        assert "real_ip_header X-Forwarded-For;" in server
        assert "real_ip_recursive on;" in server
    assert "proxy_protocol" not in text
    assert "stream {" not in text
    assert "set_real_ip_from" not in block(text, "mail {")


def test_real_ip_from_alone_trusts_x_real_ip_from_the_proxies(root: Path) -> None:
    _, text = rendered(root, **PROXY_SETTINGS)
    assert "real_ip_header X-Real-IP;" in server_with(text, f"listen {ADDRESS}:443")


def test_without_real_ip_from_nginx_believes_no_client(root: Path) -> None:
    """The default: no realip, and the web app's client headers are nginx's own values,
    whatever the request carried."""
    _, text = rendered(root)
    assert "set_real_ip_from" not in text and "real_ip_header" not in text
    server = server_with(text, f"listen {ADDRESS}:443")
    assert "proxy_set_header X-Real-IP $remote_addr;" in server
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in server
    assert "proxy_set_header X-Forwarded-By $realip_remote_addr;" in server
    forwarded = [line for line in server if line.startswith("proxy_set_header")]
    assert not any("$http_" in line or "proxy_add_x_forwarded_for" in line for line in forwarded)


def test_proxy_protocol_on_every_port(root: Path) -> None:
    """PROXY_PROTOCOL=all: 80, 443 and 25 expect the header and take the client from it
    (only from REAL_IP_FROM); 465 and 587 move behind nginx's stream proxy, which passes
    the client to Postfix's internal listeners with a header of its own."""
    service, text = rendered(root, **PROXY_SETTINGS, PROXY_PROTOCOL=(25, 80, 443, 465, 587, 993))
    top = directives(text)
    assert "load_module /usr/lib/nginx/modules/ngx_stream_module.so;" in top
    http = server_with(text, f"listen {ADDRESS}:80")
    assert f"listen {ADDRESS}:80 proxy_protocol;" in http
    assert "real_ip_header proxy_protocol;" in http
    https = server_with(text, f"listen {ADDRESS}:443")
    assert f"listen {ADDRESS}:443 ssl http2 proxy_protocol;" in https
    assert "real_ip_header proxy_protocol;" in https

    mail = directives(block(text, "mail {"))
    assert f"listen {ADDRESS}:25 proxy_protocol;" in mail
    assert "set_real_ip_from 192.0.2.10/32;" in mail
    assert "xclient on;" in mail

    stream = block(text, "stream {")
    for port, internal in ((465, 10465), (587, 10587)):
        server = server_with(stream, f"listen {ADDRESS}:{port}")
        assert f"listen {ADDRESS}:{port} proxy_protocol;" in server
        assert "set_real_ip_from 192.0.2.10/32;" in server
        assert "set_real_ip_from 2001:db8::/64;" in server
        assert f"proxy_pass {service.layout.internal_address}:{internal};" in server
        assert "proxy_protocol on;" in server
    # 993 is Dovecot's own listener.
    assert ":993" not in text


def test_proxy_protocol_on_some_ports(root: Path) -> None:
    """Only the listed ports expect the header; 587 listed but closed gets no proxy."""
    _, text = rendered(
        root, **{**PROXY_SETTINGS, "PORTS": (25, 80, 443, 465)}, PROXY_PROTOCOL=(443, 587)
    )
    assert f"listen {ADDRESS}:25;" in directives(block(text, "mail {"))
    assert "set_real_ip_from" not in block(text, "mail {")
    assert "real_ip_header X-Real-IP;" in server_with(text, f"listen {ADDRESS}:80")
    assert f"listen {ADDRESS}:443 ssl http2 proxy_protocol;" in directives(text)
    assert "stream {" not in text and "ngx_stream_module" not in text


def test_proxy_protocol_on_submission_names_the_missing_stream_module(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "roost.services.nginx.service.STREAM_MODULE", root / "no" / "ngx_stream_module.so"
    )
    with pytest.raises(ServiceConfigError, match="install the Debian package libnginx-mod-stream"):
        rendered(root, **PROXY_SETTINGS, PROXY_PROTOCOL=(465,))
    # Without 465/587 in PROXY_PROTOCOL the module is not needed.
    rendered(root, **PROXY_SETTINGS, PROXY_PROTOCOL=(25, 993))
