"""roost.core.anonmail: the local part of a new anonymous alias (pure, no I/O)."""

from __future__ import annotations

import re

import pytest

from roost.core import anonmail
from roost.core.address import check_localpart


@pytest.mark.parametrize(
    ("hostname", "label"),
    [
        ("github.com", "github"),
        ("https://www.amazon.com/x", "amazon"),
        ("subdomain.test.co.uk", "test"),
        ("http://user:pass@www.test-site.co.uk:8443/p", "testsite"),
        ("shop.example.com:443", "example"),
        ("WWW.Example.COM.", "example"),
        ("https://news.ycombinator.com/item?id=1", "ycombinator"),
        ("my_site.example.org", "example"),
        ("foo.bar.example.com.au", "example"),
        ("  github.com  ", "github"),
    ],
)
def test_the_label_is_the_registrable_name_left_of_the_public_suffix(
    hostname: str, label: str
) -> None:
    assert anonmail.site_label(hostname) == label


@pytest.mark.parametrize(
    "hostname",
    [
        None,
        "",
        "   ",
        "localhost",
        "http://localhost:8080/",
        "com",
        "co.uk",
        "1.2.3.4",
        "http://192.0.2.1/login",
        "[2001:db8::1]:443",
        "http://[2001:db8::1]/",
        "http://",
        "https://:443/",
        "-.com",
        "x" * 5000 + ".com",
    ],
)
def test_no_usable_host_name_has_no_label(hostname: str | None) -> None:
    assert anonmail.site_label(hostname) is None


def test_a_site_gives_label_dot_word() -> None:
    local = anonmail.local_part_for("https://www.amazon.com/x", word=lambda: "banana")
    assert local == "amazon.banana"


def test_without_a_site_the_local_part_is_a_16_character_token() -> None:
    for hostname in (None, "", "localhost"):
        local = anonmail.local_part_for(hostname, word=lambda: "never")
        assert re.fullmatch(r"[a-z0-9]{16}", local), local


def test_tokens_and_words_are_random() -> None:
    assert len({anonmail.random_token() for _ in range(50)}) == 50
    assert len({anonmail.random_word() for _ in range(200)}) > 20


def test_the_word_list_has_hundreds_of_short_lower_case_words() -> None:
    words = anonmail.words()
    assert len(words) >= 300
    assert len(set(words)) == len(words)
    for word in words:
        assert re.fullmatch(r"[a-z]{5,10}", word), word


def test_a_random_word_is_one_of_the_list() -> None:
    assert anonmail.random_word() in anonmail.words()
    assert anonmail.random_word(lambda items: items[0]) == anonmail.words()[0]


def test_every_local_part_is_one_the_store_takes() -> None:
    long_label = "a" * 63 + ".com"
    for hostname in (long_label, "github.com", None, "https://x-y.co.uk/"):
        for _ in range(20):
            local = anonmail.local_part_for(hostname)
            assert check_localpart(local) == local
            assert len(local) <= 64
