"""Address, domain and local-part syntax (roost.core.address)."""

from __future__ import annotations

import dataclasses

import pytest

from roost.core.address import (
    DOMAIN_MAX,
    Address,
    AddressError,
    check_localpart,
    check_wildcard_pattern,
    domain_to_ascii,
    domain_to_unicode,
    forbidden_char,
    normalize_localpart,
    parse_address,
    split_detail,
)

# ---------------------------------------------------------------------- domain_to_ascii


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008, non-transitional
        ("\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "example.com"),  # UTS #46 width map
        ("localhost", "localhost"),
        ("a-b.c0", "a-b.c0"),
        ("mail.123.example", "mail.123.example"),
    ],
)
def test_domain_to_ascii(given: str, expected: str) -> None:
    assert domain_to_ascii(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "domain is empty"),
        (".", "domain is empty"),
        ("x..y", "domain 'x..y' is not valid"),
        ("-a.com", "is not valid"),
        ("a-.com", "is not valid"),
        ("a_b.com", "is not valid"),
        ("ab--c.com", "is not valid"),
        ("xn--zz.com", "is not valid"),
        ("exa mple.com", "is not valid"),
        ("1.2.3.4", "numeric"),
        ("[192.0.2.1]", "address literal"),
        ("a" * 64 + ".com", "longer than 63"),
    ],
)
def test_domain_to_ascii_rejects(given: str, message: str) -> None:
    with pytest.raises(AddressError, match=message.replace(".", r"\.").replace("[", r"\[")):
        domain_to_ascii(given)


def test_domain_length_limits() -> None:
    # The store's domain column holds 80 characters (Mailu's IdnaDomain is a String(80)).
    eighty = ".".join(["a" * 39, "b" * 40])
    assert len(eighty) == 80
    assert domain_to_ascii(eighty) == eighty
    with pytest.raises(AddressError, match="too long"):
        domain_to_ascii(eighty + "c")
    # Names that are not stored as domains may use the RFC limit of 253.
    long_name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(long_name) == 253
    assert domain_to_ascii(long_name, max_length=DOMAIN_MAX) == long_name
    with pytest.raises(AddressError, match="too long"):
        domain_to_ascii(long_name + "b", max_length=DOMAIN_MAX)


def test_domain_to_ascii_non_text() -> None:
    with pytest.raises(AddressError):
        domain_to_ascii(None)  # type: ignore[arg-type]
    with pytest.raises(AddressError):
        domain_to_ascii(["x"])  # type: ignore[arg-type]


def test_domain_to_ascii_error_is_value_error() -> None:
    assert issubclass(AddressError, ValueError)


def test_domain_to_unicode() -> None:
    assert domain_to_unicode("xn--bcher-kva.example") == "bücher.example"
    assert domain_to_unicode("Bücher.Example") == "bücher.example"
    assert domain_to_unicode("EXAMPLE.com") == "example.com"
    with pytest.raises(AddressError):
        domain_to_unicode("xn--zz.com")


# ---------------------------------------------------------------------- parse_address


def test_parse_address_normalises() -> None:
    address = parse_address("Joe.Doe@Bücher.Example")
    assert address == Address("joe.doe", "xn--bcher-kva.example")
    assert str(address) == "joe.doe@xn--bcher-kva.example"


def test_address_is_frozen() -> None:
    address = parse_address("joe@example.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.local = "ann"  # type: ignore[misc]


def test_parse_address_accepts_cli_local_parts() -> None:
    # Mailu's CLI stores any local part (its tests create user/with/slash), and a forward
    # destination elsewhere may have one: parsing takes it, check_localpart does not.
    assert parse_address("user/with/slash@example.com").local == "user/with/slash"
    assert parse_address("jöe@example.com").local == "jöe"
    assert parse_address("joe+tag@example.com.").domain == "example.com"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("a@@b", "'a@@b': more than one @"),
        ("a@b@example.com", "more than one @"),
        ('"joe"@example.com', "local part is quoted"),
        ("joe", "no @"),
        ("", "empty"),
        ("@example.com", "empty local part"),
        ("jo e@example.com", "character ' '"),
        ("joe\t@example.com", "character"),
        ("joe\n@example.com", "character"),
        ("jo\x00e@example.com", "character"),
        ("a,b@example.com", "character ','"),
        ("<joe@example.com>", "character '<'"),
        ("joe>@example.com", "character '>'"),
        ("jo\\e@example.com", "character"),
        ("jo\u200be@example.com", "character"),
        ("joe@", "domain is empty"),
        ("joe@x..y", "domain 'x..y' is not valid"),
        ("joe@[192.0.2.1]", "address literal"),
        ("a" * 65 + "@example.com", "local part is longer than 64"),
    ],
)
def test_parse_address_rejects(given: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(given)
    assert message in str(info.value)


def test_parse_address_length_limits() -> None:
    local = "a" * 64
    domain = ".".join(["b" * 63, "c" * 63, "d" * 61])  # 189 characters
    assert len(f"{local}@{domain}") == 254
    assert str(parse_address(f"{local}@{domain}")) == f"{local}@{domain}"
    with pytest.raises(AddressError, match="longer than 254"):
        parse_address(f"{local}@{domain}e")
    # Octets, not characters: 'é' is two octets in UTF-8.
    with pytest.raises(AddressError, match="local part is longer"):
        parse_address("é" * 33 + "@example.com")


def test_parse_address_non_text() -> None:
    with pytest.raises(AddressError):
        parse_address(None)  # type: ignore[arg-type]


def test_forbidden_char() -> None:
    assert forbidden_char("joe") is None
    assert forbidden_char("jöe") is None
    assert forbidden_char("a,b") == ","
    assert forbidden_char("jö e") == " "
    assert forbidden_char("jö\u2028") == "\u2028"


# ---------------------------------------------------------------------- local parts


@pytest.mark.parametrize(
    ("local", "delimiters", "expected"),
    [
        ("joe+x", "+", ("joe", "+x")),
        ("joe+x+y", "+", ("joe", "+x+y")),
        ("joe-x+y", "+-", ("joe", "-x+y")),
        ("joe+x", "", ("joe+x", "")),
        ("joe", "+", ("joe", "")),
        ("+x", "+", ("+x", "")),  # an empty local part names nobody
        ("joe+", "+", ("joe", "+")),
    ],
)
def test_split_detail(local: str, delimiters: str, expected: tuple[str, str]) -> None:
    assert split_detail(local, delimiters) == expected


def test_normalize_localpart() -> None:
    assert normalize_localpart("Joe.DOE") == "joe.doe"


@pytest.mark.parametrize(
    "local",
    ["joe", "Joe.Doe", "a!#$%&'*+=?^_`{|}~-z", "x", "a" * 64],
)
def test_check_localpart_accepts(local: str) -> None:
    assert check_localpart(local) == local.lower()


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ("", "empty"),
        (".joe", "starts or ends with a dot"),
        ("joe.", "starts or ends with a dot"),
        ("jo..e", "'..'"),
        ("jo e", "character ' '"),
        ("jo,e", "character ','"),
        ("jo@e", "@"),
        ('"joe"', "quoted"),
        ("jöe", "character 'ö'"),
        ("user.with(", "character '('"),
        # '/' is RFC 5322 atext, but it would put the mailbox elsewhere than ROOT/mail/<addr>.
        ("/etc/cron.d/x", "contains '/'"),
        ("a/b", "contains '/'"),
        ("a/./b", "contains '/'"),
        ("/", "contains '/'"),
        ("a" * 65, "longer than 64"),
    ],
)
def test_check_localpart_rejects(local: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        check_localpart(local)
    assert message in str(info.value)


@pytest.mark.parametrize("pattern", ["%", "_", "a%", "%.admin", "Sales_%", "x.%.y"])
def test_check_wildcard_pattern_accepts(pattern: str) -> None:
    assert check_wildcard_pattern(pattern) == pattern.lower()


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("a\\%", "character '\\\\'"),
        ("a b%", "character ' '"),
        ("a@%", "@"),
        ("%" * 65, "longer than 64"),
    ],
)
def test_check_wildcard_pattern_rejects(pattern: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        check_wildcard_pattern(pattern)
    assert message in str(info.value)


def test_parse_address_refuses_text_that_was_not_utf8() -> None:
    """A login name whose bytes were not UTF-8 reaches the gate as lone surrogates; it is
    no address (an error, not a crash of the login decision)."""
    with pytest.raises(AddressError, match="not UTF-8"):
        parse_address("\udcffjoe@example.test")
