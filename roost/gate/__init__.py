"""The gate: answers Postfix, Dovecot and nginx from an in-memory index of the store.

One asyncio process (``python -m roost gate``, :func:`roost.gate.server.serve`):

* ``socketmap`` — Postfix's socketmap_table(5) maps: domain, mailbox, alias, transport,
  senderlogin;
* ``http`` and ``routes`` — nginx's auth_http and Dovecot's Lua passdb/userdb over HTTP/1.1;
* ``auth`` — the one login decision every protocol shares; ``limiter`` — its rate limits;
* ``index`` — the Directory every answer comes from, reloaded when the store moves;
* ``control`` — the reload request the CLI sends after a change (and its client).
"""
