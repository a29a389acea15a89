"""The only package that talks OpenID Connect: discovery, login flows, token checks, cache.

Every function takes its edges (an ``httpx.Client``, a clock, a browser opener) as arguments,
so unit tests can swap them; the e2e suite runs the same code against a real Dex.
"""

# The scopes dexkit asks Dex for: groups for the API server's groups claim, offline_access for
# a refresh token. Kept here, in the package's import-free __init__, because the kubectl plugin's
# lean path needs it too.
DEFAULT_SCOPES = ("openid", "email", "groups", "profile", "offline_access")
