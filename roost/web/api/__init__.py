"""Roost's REST API v1: Mailu's API (https://mailu.io/master/api.html), same paths and fields.

``build_api(settings)`` makes the sub-application the web app mounts at ``WEB_API + "/v1"``;
``check_api_token(settings)`` is the start-up check of API_TOKEN. See docs/api.md.
"""

from roost.web.api.app import build_api
from roost.web.api.auth import ApiTokenError, api_token_problem, check_api_token

__all__ = ["ApiTokenError", "api_token_problem", "build_api", "check_api_token"]
