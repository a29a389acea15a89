"""The only package that talks OpenID Connect: discovery, login flows, token checks, cache.

Every function takes its edges (an ``httpx.Client``, a clock, a browser opener) as arguments,
so unit tests can swap them; the e2e suite runs the same code against a real Dex.
"""
