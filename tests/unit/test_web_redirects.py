"""Mailu's two fixed redirects under WEB_ADMIN: ``/webmail`` to WEB_WEBMAIL (404 when it is
empty) and the old ``/ui/`` to WEB_ADMIN for good; neither needs a signed-in session."""

from __future__ import annotations

import pytest

from roost.settings import Settings
from tests.unit.test_web_mounts import get


@pytest.mark.parametrize("target", ["/roundcube", "https://webmail.example.net/"])
def test_webmail_goes_to_web_webmail(target: str) -> None:
    answer = get(Settings(WEB_WEBMAIL=target), "/admin/webmail")
    assert answer.status_code == 302
    assert answer.headers["location"] == target


def test_webmail_goes_to_roosts_own_roundcube() -> None:
    answer = get(Settings(WEBMAIL="roundcube"), "/admin/webmail")
    assert (answer.status_code, answer.headers["location"]) == (302, "/webmail")


def test_webmail_is_not_found_without_web_webmail() -> None:
    assert Settings().WEB_WEBMAIL == ""
    assert get(Settings(), "/admin/webmail").status_code == 404


@pytest.mark.parametrize("admin", ["/admin", "/manage"])
def test_the_old_ui_path_moved_to_web_admin(admin: str) -> None:
    answer = get(Settings(WEB_ADMIN=admin), f"{admin}/ui/")
    assert answer.status_code == 301
    assert answer.headers["location"] == admin


def test_no_web_admin_no_redirects() -> None:
    settings = Settings(WEB_ADMIN="", WEB_WEBMAIL="/roundcube")
    assert get(settings, "/admin/webmail").status_code == 404
    assert get(settings, "/admin/ui/").status_code == 404
