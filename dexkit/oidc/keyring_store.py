"""``--token-cache-storage keyring``: entries in the OS keyring, through the keyring library.

The keyring library picks the platform's backend (macOS Keychain, Windows Credential Locker,
the Secret Service on a Linux desktop). Where none is usable (a server, a container, CI) it
offers only its ``fail`` backend: then :func:`available` says why, and the cache degrades to
disk with one warning instead of failing every kubectl command.
"""

from __future__ import annotations

from typing import Any

from dexkit.errors import DexkitError


def _backend() -> Any:
    # keyring (~60 ms) only for --token-cache-storage=keyring.
    import keyring  # noqa: PLC0415

    return keyring.get_keyring()


def available() -> str | None:
    """None when a usable keyring backend exists, else the reason there is none."""
    try:
        import keyring  # noqa: PLC0415
        from keyring.backends import fail  # noqa: PLC0415
    except ImportError:
        return "the keyring library is not installed"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # a broken backend configuration must not stop kubectl
        return f"the keyring cannot be opened: {exc}"
    if isinstance(backend, fail.Keyring):
        return "no keyring backend is available on this machine"
    # A backend that is installed but cannot work here rates itself below zero.
    priority = getattr(backend, "priority", 1)
    if isinstance(priority, int | float) and priority < 0:
        return f"the keyring backend {type(backend).__name__} cannot work here"
    return None


def get(service: str, key: str) -> str | None:
    from keyring.errors import KeyringError  # noqa: PLC0415

    try:
        value = _backend().get_password(service, key)
    except KeyringError:
        return None
    return str(value) if value is not None else None


def put(service: str, key: str, value: str) -> None:
    from keyring.errors import KeyringError  # noqa: PLC0415

    try:
        _backend().set_password(service, key, value)
    except KeyringError as exc:
        raise DexkitError(f"cannot store the token in the keyring: {exc}",
                          "use --token-cache-storage disk") from None


def delete(service: str, key: str) -> bool:
    from keyring.errors import KeyringError, PasswordDeleteError  # noqa: PLC0415

    try:
        _backend().delete_password(service, key)
    except PasswordDeleteError:
        return False
    except KeyringError:
        return False
    return True
