"""dexkit: wire Kubernetes API-server authentication to the Dex OIDC issuer, end to end."""

__version__ = "0.1.0"
