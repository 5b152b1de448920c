"""The installer's Python half: the first settings file, and the host's Postfix tweak.

setup.sh installs packages and the virtualenv in shell, then calls this module with the
virtualenv's Python for what needs Roost's own knowledge: which settings exist, how to
derive DOMAIN and HOSTNAMES from the machine's name, and whether the result loads.

    python -m roost.bootstrap.install new-settings --output /etc/roost/mailu.env [--from FILE]
    python -m roost.bootstrap.install postfix-prerequisites --env /etc/roost/mailu.env
    python -m roost.bootstrap.install uninstall --env /etc/roost/mailu.env

``new-settings`` prints the admin password it generated (if it generated one) on stdout and
nothing else there: the password is not written into the file, so it is seen only once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.settings import (
    Settings,
    SettingsError,
    check_secret_key,
    load_settings,
    read_env_file,
)

__all__ = ["InstallError", "main", "new_settings"]

#: Settings the installer writes in this order, before anything else the user gave.
LEADING = (
    "ROOT",
    "DOMAIN",
    "HOSTNAMES",
    "POSTMASTER",
    "SECRET_KEY",
    "TLS_FLAVOR",
    "PORTS",
    "INITIAL_ADMIN_ACCOUNT",
    "INITIAL_ADMIN_DOMAIN",
    "INITIAL_ADMIN_MODE",
)
ADMIN_ACCOUNT = "admin"


class InstallError(RuntimeError):
    """The settings cannot be made; the message says what to set."""


def new_settings(
    given: Mapping[str, str], environ: Mapping[str, str], fqdn: str
) -> tuple[dict[str, str], str | None]:
    """The values of a new settings file, and the admin password if one was generated.

    ``given`` comes from ``--from FILE`` (copied as is), ``environ`` supplies any setting
    Roost knows by name, and what is still missing is derived: DOMAIN and HOSTNAMES from
    the machine's name, a random SECRET_KEY, an ``admin@DOMAIN`` account. A password from
    the environment or generated here is kept out of the file (only a password the user
    put in their own file stays there): it is needed once, to create the admin.
    """
    names = {f.name for f in fields(Settings)}
    values = dict(given)
    for name in names:
        if name in environ and name != "INITIAL_ADMIN_PW":
            values[name] = environ[name]
    domain, hostnames = _names(values.get("DOMAIN", ""), values.get("HOSTNAMES", ""), fqdn)
    values["DOMAIN"], values["HOSTNAMES"] = domain, hostnames
    if values.get("SECRET_KEY", "") in ("", Settings.SECRET_KEY):
        values["SECRET_KEY"] = secrets.token_hex(16)
    values.setdefault("TLS_FLAVOR", "cert")
    generated = None
    if "INITIAL_ADMIN_ACCOUNT" not in values:
        values["INITIAL_ADMIN_ACCOUNT"] = ADMIN_ACCOUNT
        values.setdefault("INITIAL_ADMIN_DOMAIN", domain)
        values.setdefault("INITIAL_ADMIN_MODE", "ifmissing")
        if not values.get("INITIAL_ADMIN_PW") and not environ.get("INITIAL_ADMIN_PW"):
            generated = secrets.token_urlsafe(12)
    ordered = {name: values.pop(name) for name in LEADING if name in values}
    ordered.update(sorted(values.items()))
    return ordered, generated


def _names(domain: str, hostnames: str, fqdn: str) -> tuple[str, str]:
    """DOMAIN and HOSTNAMES, each taken from the other or from the machine's name."""
    fqdn = fqdn.strip().rstrip(".").lower()
    if not domain and hostnames:
        first = hostnames.split(",")[0].strip()
        labels = first.split(".")
        domain = ".".join(labels[1:]) if len(labels) > 2 else first
    if not domain:
        labels = fqdn.split(".")
        if len(labels) < 2 or not all(labels):
            raise InstallError(
                f"cannot tell the mail domain from this machine's name {fqdn or '(none)'!r}: "
                "give it, e.g. sudo DOMAIN=example.com HOSTNAMES=mail.example.com ./setup.sh"
            )
        domain = ".".join(labels[1:]) if len(labels) > 2 else fqdn
    if not hostnames:
        hostnames = fqdn if fqdn == domain or fqdn.endswith("." + domain) else f"mail.{domain}"
    return domain, hostnames


def render(values: Mapping[str, str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"# Roost settings, written by setup.sh on {stamp}.",
        "# Names and meanings are Mailu's mailu.env; see docs/configuration.md.",
        "# After a change, restart `roost up` (or: systemctl restart roost).",
    ]
    lines += [f"{name}={value}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write_settings(output: Path, values: Mapping[str, str]) -> Settings:
    """Write the file (0600: it holds SECRET_KEY) only if it loads without error."""
    tmp = output.with_name(f".{output.name}.new")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render(values))
    try:
        settings = load_settings(env_file=tmp, environ={})
        check_secret_key(settings, output)  # `roost up` would refuse it: say so now
    except SettingsError:
        tmp.unlink()
        raise
    os.replace(tmp, output)
    return settings


def _new_settings_command(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.exists():
        raise InstallError(f"{output} exists; edit it instead of making a new one")
    given = read_env_file(args.source) if args.source else {}
    values, generated = new_settings(given, os.environ, socket.getfqdn())
    write_settings(output, values)
    if generated:
        print(generated)
    return 0


def _postfix_command(args: argparse.Namespace) -> int:
    from roost.services.postfix import system_prerequisites

    settings = load_settings(env_file=args.env)
    message = system_prerequisites(Layout(settings))
    if message:
        print(message, file=sys.stderr)
    return 0


def _uninstall_command(args: argparse.Namespace) -> int:
    """Undo what the installer did outside ROOT, once no ``roost up`` runs for it; prints
    ROOT, which stays (the mail, the store, the keys)."""
    from roost.runner.lock import LOCK_NAME, is_held
    from roost.services.postfix import system_prerequisites

    layout = Layout(load_settings(env_file=args.env))
    if is_held(layout.run / LOCK_NAME):
        raise InstallError(
            f"Roost is running for {layout.root}: stop it first (Ctrl-C where `roost up` "
            "runs, or: systemctl stop roost), then run ./setup.sh --uninstall again"
        )
    message = system_prerequisites(layout, remove=True)
    if message:
        print(message, file=sys.stderr)
    print(layout.root)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roost.bootstrap.install")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-settings", help="write a first settings file")
    new.add_argument("--output", type=Path, required=True)
    new.add_argument("--from", dest="source", type=Path)
    new.set_defaults(run=_new_settings_command)
    postfix = commands.add_parser(
        "postfix-prerequisites", help="let the host's Postfix tools serve this stack"
    )
    postfix.add_argument("--env", type=Path, required=True)
    postfix.set_defaults(run=_postfix_command)
    uninstall = commands.add_parser(
        "uninstall", help="undo the host's Postfix tweak; print ROOT (setup.sh --uninstall)"
    )
    uninstall.add_argument("--env", type=Path, required=True)
    uninstall.set_defaults(run=_uninstall_command)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (InstallError, SettingsError, ServiceConfigError) as exc:
        print(f"setup.sh: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
