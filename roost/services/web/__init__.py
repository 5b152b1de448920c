"""The web application as a supervised service."""

from roost.services.web.service import WebService

__all__ = ["WebService"]
