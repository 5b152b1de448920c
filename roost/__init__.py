"""Roost: a complete, self-hosted mail server distribution."""
