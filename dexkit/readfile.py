"""Reading a file dexkit did not necessarily write, without being fooled by what is at the path.

The one reader under every file dexkit reads (through :func:`dexkit.files.read_limited`, or
directly on ``dexkit token``'s cached path, which is why this module imports nothing but os).
Rules, in the order they act:

- The file is opened non-blocking, so that a FIFO at the path never hangs the command (nobody
  may ever write to it), and then looked at (``fstat`` of what was opened, not of the name): a
  FIFO, a device (``/dev/zero`` would be read until memory runs out), a socket is refused by
  name, never read. A pipe is read only where the caller allows one (``--password-file
  <(pass show dex)``), and then within a time limit.
- A file holding a secret or a key (``secret``: the project's password files, private keys, the
  token cache) is opened without following a symbolic link (a cloned project must not make
  dexkit send ``~/.ssh/id_ed25519`` as a password, or upload it as Dex's key), must belong to
  the user running dexkit (root: any user) and must not be open to group or others (as
  ``ssh`` refuses an open key). A file dexkit trusts (``trust``: a CA given by path, which
  decides whom dexkit believes) follows links (system bundles are links) but must belong to
  the user or root and not be writable by others.
- At most ``max_bytes`` are read; a longer file is refused, not read to the end.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KiB = 1024
MiB = 1024 * KiB
MAX_BYTES = 16 * MiB  # far beyond any dexkit.yaml, kubeconfig, manifest or PEM bundle
SECRET_MAX_BYTES = 1 * MiB  # an RSA-4096 key is 3.3 KiB; a password far less
PIPE_TIMEOUT = 30.0

_KINDS = {0o010000: "a named pipe (FIFO)", 0o020000: "a character device",
          0o060000: "a block device", 0o140000: "a socket", 0o040000: "a directory"}
_REGULAR = 0o100000
_FIFO = 0o010000
_FORMAT = 0o170000


class Refused(OSError):
    """A file dexkit will not read: ``reason`` says what it is, ``hint`` what to do."""

    def __init__(self, path: str, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.filename = path
        self.reason = reason
        self.hint = hint

    def __str__(self) -> str:
        return self.reason


def open_checked(path: str | os.PathLike[str], *, secret: bool = False, trust: bool = False,
                 pipe: bool = False) -> "tuple[int, Any]":
    """An open descriptor of ``path`` and its ``fstat``, after the module's rules; the caller
    closes it. Raises OSError (FileNotFoundError...) or :class:`Refused`."""
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    if secret:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(name, flags)
    except OSError:
        # O_NOFOLLOW met a link (ELOOP; EMLINK on the BSDs); pathlib is not loaded here
        if secret and os.path.islink(name):  # noqa: PTH114
            raise Refused(name, f"{name} is a symbolic link; dexkit reads secrets and keys "
                          "only from a regular file, never through a link",
                          f"put the file itself at {name} (or keep it elsewhere and point "
                          "dexkit there)") from None
        raise
    try:
        info = os.fstat(fd)
        _check(name, info, secret=secret, trust=trust, pipe=pipe)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _check(name: str, info: "Any", *, secret: bool, trust: bool, pipe: bool) -> None:
    kind = info.st_mode & _FORMAT
    if kind == 0o040000:
        raise IsADirectoryError(21, "Is a directory", name)
    if kind != _REGULAR and not (pipe and kind == _FIFO):
        what = _KINDS.get(kind, "not a regular file")
        raise Refused(name, f"{name} is {what}, not a regular file; dexkit does not read it",
                      f"pass a regular file (or move {name} away)")
    me = os.geteuid()
    if (secret or trust) and kind == _REGULAR and info.st_uid not in (me, 0) and me != 0:
        raise Refused(name, f"{name} belongs to uid {info.st_uid}, not to you (uid {me}); dexkit "
                      "does not use a secret, key or CA another user controls",
                      f"use a file of your own (or have its owner give it to you: chown {me})")
    mode = info.st_mode & 0o777
    if secret and kind == _REGULAR and mode & 0o077:
        what = "readable" if mode & 0o044 else "writable"
        raise Refused(name, f"{name} is {what} by other users (mode {mode:04o}); a file holding "
                      "a secret or a private key must be 0600",
                      f"'chmod 600 {name}'; if anyone else could log in here, treat what it "
                      "holds as leaked")
    if trust and mode & 0o002:
        raise Refused(name, f"{name} can be written by every user (mode {mode:04o}); dexkit "
                      "does not trust a CA anyone can replace", f"'chmod o-w {name}'")


def read_fd(fd: int, info: "Any", name: str, max_bytes: int = MAX_BYTES,
            timeout: float = PIPE_TIMEOUT) -> bytes:
    """All of an open file (a pipe within ``timeout``), or :class:`Refused` past ``max_bytes``."""
    if info.st_mode & _FORMAT == _REGULAR and info.st_size > max_bytes:
        raise _too_large(name, max_bytes)
    chunks = []
    total = 0
    is_pipe = info.st_mode & _FORMAT == _FIFO
    deadline = None
    while True:
        try:
            chunk = os.read(fd, min(max_bytes + 1 - total, 1 * MiB))
        except BlockingIOError:
            deadline = _wait(fd, name, deadline, timeout)
            continue
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(name, max_bytes)
        if is_pipe:
            deadline = None
    return b"".join(chunks)


def _wait(fd: int, name: str, deadline: float | None, timeout: float) -> float:
    """Wait for a pipe's writer; :class:`Refused` when it stays silent past ``timeout``."""
    # On dexkit token's cached path (readfile imports only os): select and time only for a FIFO.
    import select  # noqa: PLC0415
    import time  # noqa: PLC0415

    now = time.monotonic()
    deadline = now + timeout if deadline is None else deadline
    if now >= deadline or not select.select([fd], [], [], deadline - now)[0]:
        raise Refused(name, f"nothing came through the pipe {name} within {timeout:.0f} s",
                      "check the command that writes to it")
    return deadline


def _too_large(name: str, max_bytes: int) -> Refused:
    return Refused(name, f"{name} is larger than {max_bytes // KiB} KiB, far more than dexkit "
                   "reads from such a file", f"check that {name} is the file you meant")


def read(path: str | os.PathLike[str], *, secret: bool = False, trust: bool = False,
         pipe: bool = False, max_bytes: int | None = None) -> bytes:
    """The bytes of ``path`` under the module's rules."""
    limit = max_bytes if max_bytes is not None else SECRET_MAX_BYTES if secret else MAX_BYTES
    fd, info = open_checked(path, secret=secret, trust=trust, pipe=pipe)
    try:
        return read_fd(fd, info, os.fspath(path), limit)
    finally:
        os.close(fd)
