"""Roost's REST API v1: Mailu's API (https://mailu.io/master/api.html), same paths and fields.

``build_api(settings)`` makes the sub-application the web app mounts at ``WEB_API + "/v1"``;
the start-up check of API_TOKEN is :func:`roost.settings.check_api_token`. See docs/api.md.
"""

from roost.web.api.app import build_api

__all__ = ["build_api"]
