"""The fetcher: fetched accounts (FETCHMAIL_ENABLED), one fetchmail run per account and round."""
