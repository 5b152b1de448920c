"""Fetched accounts (FETCHMAIL_ENABLED): Debian's fetchmail, run once per account and round
by Roost's loop (roost.fetcher)."""

from roost.services.fetchmail.service import FetchmailService

__all__ = ["FetchmailService"]
