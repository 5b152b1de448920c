"""Roost's web side: sign-in, account and administration pages, REST API, autoconfig.

:func:`roost.web.app.create_app` builds the application; ``python -m roost.web`` serves
it on the stack's Unix socket behind nginx.
"""
