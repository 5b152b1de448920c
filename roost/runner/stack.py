"""Which daemons make up a stack, in which order, and how each is handed to the supervisor.

The stack is every class in the registry (roost.services.registry) whose
``enabled(settings)`` says yes; a disabled one is never instantiated, so it renders no
configuration and starts no process. The order comes from each service's ``after``: a
daemon starts only once every daemon it names is ready (docs/ARCHITECTURE.md: redis,
gate, dovecot, postfix, nginx). Services that do not depend on each other keep the order
in which they are listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from roost.layout import Layout
from roost.runner.supervisor import ChildSpec
from roost.services.base import Service, ServiceConfigError
from roost.settings import SECRET_SETTINGS


def enabled_services(
    layout: Layout, registry: Iterable[type[Service]] | None = None
) -> list[Service]:
    """Every daemon this stack runs, in start order; ``registry`` replaces the real one."""
    if registry is None:
        # Imported here: `roost status` loads this module and needs no service code.
        from roost.services.registry import SERVICES

        registry = SERVICES
    settings = layout.settings
    return in_start_order([cls(layout) for cls in registry if cls.enabled(settings)])


def in_start_order(services: Sequence[Service]) -> list[Service]:
    """Order ``services`` so each comes after those it names in ``after``.

    A name in ``after`` that is not among ``services`` (a disabled daemon) is ignored; a
    cycle is a programming error reported as a configuration error, before anything starts.
    """
    by_name = {service.name: service for service in services}
    placed: list[Service] = []
    done: set[str] = set()
    remaining = list(services)
    while remaining:
        for service in remaining:
            needs = {name for name in service.after if name in by_name}
            if needs <= done:
                placed.append(service)
                done.add(service.name)
                remaining.remove(service)
                break
        else:
            names = ", ".join(service.name for service in remaining)
            raise ServiceConfigError(f"services wait for each other in a cycle: {names}")
    return placed


def child_spec(service: Service, environ: Mapping[str, str] | None = None) -> ChildSpec:
    """The supervisor's view of a service: the runner's environment less any secret
    setting given there (DB_PW=... roost up), plus the service's own. Other programs'
    daemons never need Roost's passwords; Roost's own processes get the settings they
    need from :func:`roost.services.base.roost_environment`, as Mailu's containers get
    only the secrets derived for them."""
    inherited = os.environ if environ is None else environ
    base = {k: v for k, v in inherited.items() if k not in SECRET_SETTINGS}
    stop = service.stop_command()
    refresh = service.refresh_command()
    reload = service.reload_command()
    return ChildSpec(
        name=service.name,
        argv=tuple(service.command()),
        env={**base, **service.environment()},
        readiness=service.readiness(),
        stop_argv=tuple(stop) if stop else None,
        after=tuple(service.after),
        refresh_argv=tuple(refresh) if refresh else None,
        reload_argv=tuple(reload) if reload else None,
        reload_on=frozenset(service.reload_on()) if reload else frozenset(),
    )
