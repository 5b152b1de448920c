"""The gate: answers Postfix, Dovecot and nginx from an in-memory index of the store."""
