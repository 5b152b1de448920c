"""Single sign-on: /sso/login, /sso/pw_change, /sso/logout (Mailu's paths)."""
