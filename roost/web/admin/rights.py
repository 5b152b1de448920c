"""Who may act on what in the administration pages: one place, used by every route.

The roles are Mailu's: a global administrator may do everything; a domain manager may
administer the domains they manage (their users, aliases and managers, the DNS records),
but not the domains' limits, alternatives or relays; everyone else has only their own
account page.

The rank rule decides whether one account may act on a user: yes for a global
administrator; for anyone else, only when they manage the target's domain, the target is
not a global administrator, and every domain the target manages is one they manage too.
So a manager can neither change an administrator of their own domain nor a fellow
manager who also runs a domain they do not (Mailu's fix for issue #2685 in its admin UI).
"""

from __future__ import annotations

from dataclasses import dataclass

from roost.store.models import User
from roost.web.auth import Account, Forbidden

__all__ = [
    "Target",
    "can_edit_user",
    "can_manage_domain",
    "require_admin",
    "require_domain",
    "require_user",
]


@dataclass(frozen=True, slots=True)
class Target:
    """The user acted on, as far as the rank rule needs it (stored names)."""

    email: str
    domain: str
    global_admin: bool
    managed_domains: frozenset[str]

    @classmethod
    def of(cls, user: User) -> Target:
        return cls(
            email=user.email,
            domain=user.domain_name,
            global_admin=bool(user.global_admin),
            managed_domains=frozenset(d.name for d in user.manager_of),
        )


def can_manage_domain(account: Account, domain: str) -> bool:
    """A global administrator, or a manager of ``domain`` (its stored name)."""
    return account.global_admin or domain in account.managed_domains


def can_edit_user(account: Account, target: Target) -> bool:
    """The rank rule: nobody acts on a user who outranks them.

    A user who manages no domain has no administration pages, not even for themself:
    their quota, limits and switches are their managers' to set (the account page is
    theirs).
    """
    if account.global_admin:
        return True
    if not can_manage_domain(account, target.domain) or target.global_admin:
        return False
    return target.managed_domains <= set(account.managed_domains)


def require_admin(account: Account) -> None:
    if not account.global_admin:
        raise Forbidden()


def require_domain(account: Account, domain: str) -> None:
    if not can_manage_domain(account, domain):
        raise Forbidden()


def require_user(account: Account, target: Target) -> None:
    if not can_edit_user(account, target):
        raise Forbidden()
