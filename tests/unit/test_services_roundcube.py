"""WEBMAIL=roundcube: php-fpm's and Roundcube's configuration (read back by php-fpm and
PHP themselves), the owners of its socket and data, nginx's block for it (``nginx -t``),
and the setting's rules.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_services_nginx import block, directives
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout
from roost.runner.stack import enabled_services
from roost.services.base import ServiceConfigError
from roost.services.nginx import NginxService
from roost.services.roundcube import RoundcubeService
from roost.services.roundcube.service import USER, des_key, missing_packages
from roost.settings import SettingsError, load_settings

ADDRESS = "127.0.50.32"


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


def php_config(conf_dir: Path, key: str) -> str:
    """One value of Roundcube's configuration as PHP itself reads the rendered file."""
    value = f"$config['{key}']"
    script = (
        f"include '{conf_dir}/config.inc.php'; echo json_encode({value}, JSON_UNESCAPED_SLASHES);"
    )
    return subprocess.run(
        ["php", "-r", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def test_off_by_default_no_daemon_no_route(root: Path) -> None:
    layout = layout_of(root)
    assert not RoundcubeService.enabled(layout.settings)
    assert layout.settings.webmail_path == ""
    assert "roundcube" not in [service.name for service in enabled_services(layout)]


def test_path_defaults_to_mailu_and_follows_web_webmail(root: Path) -> None:
    assert layout_of(root, WEBMAIL="roundcube").settings.webmail_path == "/webmail"
    settings = layout_of(root, WEBMAIL="roundcube", WEB_WEBMAIL="/mail/").settings
    assert settings.webmail_path == "/mail"
    with pytest.raises(SettingsError, match=r"WEB_WEBMAIL=.*path Roundcube is served under"):
        load_settings(environ={"WEBMAIL": "roundcube", "WEB_WEBMAIL": "https://mail.example/"})
    # Without Roost's webmail it stays Mailu's link to a webmail served elsewhere.
    assert load_settings(environ={"WEB_WEBMAIL": "https://mail.example/"}).webmail_path == ""


def test_on_nginx_waits_for_it(root: Path) -> None:
    names = [s.name for s in enabled_services(layout_of(root, WEBMAIL="roundcube"))]
    assert names.index("roundcube") < names.index("nginx")


def test_des_key_is_secret_derived_and_24_characters() -> None:
    first, second = des_key("a" * 32), des_key("b" * 32)
    assert len(first) == 24 and first != second and first == des_key("a" * 32)


@pytest.mark.skipif(os.geteuid() != 0, reason="the data and socket go to Roundcube's user")
def test_config_data_and_socket(root: Path) -> None:
    layout = layout_of(root, WEBMAIL="roundcube", WEB_WEBMAIL="/mail", PORTS=(25, 465, 993, 4190))
    service = RoundcubeService(layout)
    service.render()
    account = pwd.getpwnam(USER)
    # php-fpm checks its own configuration.
    check = subprocess.run(
        ["php-fpm8.2", "-t", f"--fpm-config={service.fpm_conf}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert php_config(service.etc, "request_path") == '"/mail/"'
    # The webmail's own listeners on the internal address (the test's bind address), from
    # that address, with the single sign-on token (%p), never the public ports.
    assert php_config(service.etc, "imap_host") == f'"{ADDRESS}:10143"'
    assert php_config(service.etc, "smtp_host") == f'"{ADDRESS}:10027"'
    assert php_config(service.etc, "smtp_pass") == '"%p"'
    assert f'"bindto":"{ADDRESS}:0"' in php_config(service.etc, "imap_conn_options")
    assert php_config(service.etc, "managesieve_host") == f'"{ADDRESS}:14190"'
    # Roost's plugin first, then ROUNDCUBE_PLUGINS' default: Mailu's but carddav.
    assert php_config(service.etc, "plugins") == (
        '["roost","archive","zipdownload","markasjunk","managesieve","enigma"]'
    )
    # enigma's key rings under ROOT/webmail, GnuPG's programs by path, which php-fpm's
    # open_basedir lets PHP see.
    assert php_config(service.etc, "enigma_pgp_homedir") == f'"{root}/webmail/gpg"'
    assert php_config(service.etc, "enigma_pgp_binary") == '"/usr/bin/gpg"'
    basedir = next(
        line for line in service.fpm_conf.read_text().splitlines() if "open_basedir" in line
    )
    assert basedir.endswith(
        f":{root}/webmail/temp:/usr/bin/gpg:/usr/bin/gpg-agent:/usr/bin/gpgconf"
    )
    assert php_config(service.etc, "roost_sso_entry") == '"/mail/sso"'
    assert php_config(service.etc, "roost_password_url") == '"/admin/account"'
    # Roundcube loads its plugins from Roost's directory: Debian's, and Roost's own.
    plugins = service.etc / "plugins"
    assert (plugins / "managesieve").resolve() == Path("/usr/share/roundcube/plugins/managesieve")
    assert (plugins / "roost" / "roost.php").is_file()
    assert (
        f"define('RCUBE_PLUGINS_DIR', '{plugins}/');" in (service.etc / "prepend.php").read_text()
    )
    assert f"auto_prepend_file] = {service.etc}/prepend.php" in service.fpm_conf.read_text()
    lint = subprocess.run(["php", "-l", str(plugins / "roost" / "roost.php")], check=False)
    assert lint.returncode == 0
    assert php_config(service.etc, "des_key") == f'"{des_key(layout.settings.SECRET_KEY)}"'
    assert str(root / "webmail" / "roundcube.db") in php_config(service.etc, "db_dsnw")
    config = (service.etc / "config.inc.php").stat()
    assert (config.st_gid, config.st_mode & 0o777) == (account.pw_gid, 0o640)
    for data in (root / "webmail", root / "webmail" / "gpg"):
        mode = data.stat()
        assert (mode.st_uid, mode.st_mode & 0o777) == (account.pw_uid, 0o700), data
    run = layout.roundcube_socket.parent.stat()
    assert (run.st_uid, run.st_gid) == (account.pw_uid, grp.getgrnam("www-data").gr_gid)
    assert run.st_mode & 0o777 == 0o750
    assert service.command()[-1] == f"--fpm-config={service.fpm_conf}"
    assert service.readiness().unix_sockets == (layout.roundcube_socket,)


def test_roundcube_plugins_as_mailu_with_roosts_own_always(root: Path) -> None:
    layout = layout_of(root, WEBMAIL="roundcube", ROUNDCUBE_PLUGINS=("managesieve", "roost"))
    assert RoundcubeService(layout).context()["plugins"] == ["roost", "managesieve"]
    layout = layout_of(root, WEBMAIL="roundcube", ROUNDCUBE_PLUGINS=("markasjunk", "nosuch"))
    with pytest.raises(ServiceConfigError, match=r"ROUNDCUBE_PLUGINS: no such .*: nosuch"):
        RoundcubeService(layout).context()
    environ = {"WEBMAIL": "roundcube", "ROUNDCUBE_PLUGINS": " Archive , markasjunk,,"}
    assert load_settings(environ=environ).ROUNDCUBE_PLUGINS == ("archive", "markasjunk")
    with pytest.raises(SettingsError, match=r"ROUNDCUBE_PLUGINS=.*'\.\./x' is not a plugin"):
        load_settings(environ={"ROUNDCUBE_PLUGINS": "markasjunk,../x"})


def test_plugins_name_the_debian_packages_they_need() -> None:
    # Debian's php-fpm loads the zip extension (php-zip), Crypt_GPG and GnuPG are there.
    default = list(load_settings(environ={}).ROUNDCUBE_PLUGINS)
    assert missing_packages(default, "php-fpm8.2") == []
    # A php-fpm without the zip extension (a stand-in that lists no module): the package.
    assert missing_packages(default, "/bin/true") == ["php-zip (zipdownload)"]
    assert missing_packages(["archive", "enigma"], "/bin/true") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx -t runs as root")
def test_nginx_serves_it_under_web_webmail_only_when_on(root: Path) -> None:
    assert "fastcgi_pass" not in nginx_conf(root)
    text = nginx_conf(root, WEBMAIL="roundcube")
    https = block(text, "# HTTPS, the main server")
    webmail = directives(block(https, "location /webmail/ {"))
    assert "alias /var/lib/roundcube/public_html/;" in webmail
    assert f"fastcgi_pass unix:{root}/run/roundcube/php-fpm.sock;" in webmail
    assert "fastcgi_param SCRIPT_FILENAME /var/lib/roundcube/public_html/index.php;" in webmail
    # Every PHP request asks the web application first; the token goes to PHP only on the
    # SSO entry path, and nowhere else can a request set it.
    assert "auth_request /sso/webmail/auth;" in webmail
    assert 'fastcgi_param ROOST_SSO_TOKEN "";' in webmail
    entry = directives(block(https, "location = /webmail/sso {"))
    assert "auth_request /sso/webmail/token;" in entry
    assert "fastcgi_param ROOST_SSO_TOKEN $roost_webmail_token;" in entry
    for endpoint in ("/sso/webmail/auth", "/sso/webmail/token"):
        assert "internal;" in directives(block(https, f"location = {endpoint} {{"))
    # A path is matched as itself, not as a regular expression.
    text = nginx_conf(root, WEBMAIL="roundcube", WEB_WEBMAIL="/web.mail")
    assert r"location ~ ^/web\.mail/(?:index\.php)?$ {" in text
