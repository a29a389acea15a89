"""Logins for one cache entry: one at a time, and a pause after a browser login that failed.

IDEs, Lens and k9s run kubectl, and so ``dexkit token``, over and over, several at once and
around the clock. Left alone, every call that finds no usable token opens a browser tab:
kubelogin's users come back to dozens of them (its issues #904 and #1330), and parallel calls
fight over the loopback port (#389). Rules, per cache entry (one key,
:func:`dexkit.oidc.options.identity_key`):

- A login runs while its process holds ``<key>.login``, a file lock beside the entry and apart
  from the entry's ``<key>.lock`` (which a refresh or a write holds for a moment): a login that
  waits minutes for a person never delays a caller whose token is valid, and only the holder
  listens on the loopback port.
- A caller that finds that lock taken waits, at most the authentication timeout
  (``--authentication-timeout-sec``) plus :data:`GRACE` s for the code exchange, re-reading the
  cache as it waits: the token the other login stores is its answer. Having the lock, it
  re-reads the cache once more before it logs in (the login it waited for may have just ended).
- A browser or device login that fails after its page or code was shown (cancelled on Dex's
  approval screen, the page closed and the timeout reached, refused) leaves ``<key>.failed``:
  when, how many in a row, which grant. Nothing secret; 0600, written atomically, in the cache
  directory (0700).
- For ``--login-retry-after-sec`` s after such a failure (default 60, doubled for each further
  failure in a row, at most an hour or the setting if longer; 0 turns the pause off), a caller
  that would log in opens no page: it fails at once, saying when the last login failed, when a
  new one may open, and that ``dexkit login`` logs in now. ``dexkit login`` (a person asked)
  is never paused; a successful login removes the record.
- The password and keyboard grants show nobody a page, so they are never paused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dexkit import files, readfile
from dexkit.errors import LoginRequired

if TYPE_CHECKING:
    from filelock import FileLock

T = TypeVar("T")

GRACE = 30.0  # s: discovery, the code exchange and the key fetch after the callback (10 s each)
POLL = 0.2  # s between looks at the cache and the lock while another login runs
MAX_PAUSE = 3600.0  # s: the longest pause, however many failures in a row
STREAK_GAP = 3600.0  # s after a pause ends within which a new failure counts as one more in a row
PAUSED_GRANTS = ("authcode", "device")
_MAX_RECORD_BYTES = 4096


@dataclass(frozen=True)
class Failure:
    """The last failed browser or device login of one entry."""

    at: int  # seconds since the epoch
    count: int  # failures in a row
    grant: str

    def pause(self, base: float) -> float:
        """Seconds after ``at`` during which no new login opens."""
        if base <= 0:
            return 0.0
        return float(min(base * 2 ** min(self.count - 1, 32), max(base, MAX_PAUSE)))


def record_path(directory: Path, key: str) -> Path:
    return directory / f"{key}.failed"


def read_failure(directory: Path, key: str, now: float) -> Failure | None:
    """The entry's record, or None when there is none we may use: not a regular file of ours
    that only we can read, unreadable, or dated in the future (the clock was set back)."""
    raw = _read_private(record_path(directory, key))
    if raw is None:
        return None
    fields: dict[str, str] = {}
    for line in raw.decode("ascii", errors="replace").splitlines():
        name, _, value = line.partition(" ")
        fields[name] = value
    at, count, grant = fields.get("failed_at", ""), fields.get("failures", ""), fields.get("grant")
    if not (at.isdigit() and len(at) <= 12 and count.isdigit() and 0 < int(count) <= 10000
            and grant in PAUSED_GRANTS):
        return None
    if int(at) > now + 60:
        return None
    return Failure(int(at), int(count), str(grant))


def _read_private(path: Path) -> bytes | None:
    """The record's bytes through the one reader (no links, ours, 0600, a size limit), or
    None for anything else: a record that cannot be trusted is no record."""

    try:
        return readfile.read(path, secret=True, max_bytes=_MAX_RECORD_BYTES)
    except (readfile.Refused, OSError):
        return None


def is_record(path: Path) -> bool:
    """Whether ``path`` is a record this module wrote (for ``dexkit logout``)."""
    key = path.name.removesuffix(".failed")
    return read_failure(path.parent, key, float("inf")) is not None


def record_failure(directory: Path, key: str, grant: str, now: float, base: float) -> Failure:
    """Write the record of a failure at ``now``: one more in a row when the last one's pause
    ended less than :data:`STREAK_GAP` ago."""

    last = read_failure(directory, key, now)
    count = 1
    if last is not None and now - last.at < last.pause(base) + STREAK_GAP:
        count = last.count + 1
    failure = Failure(int(now), count, grant)
    files.atomic_write(record_path(directory, key),
                       f"failed_at {failure.at}\nfailures {failure.count}\ngrant {grant}\n",
                       files.PRIVATE)
    return failure


def clear_failure(directory: Path, key: str) -> None:
    record_path(directory, key).unlink(missing_ok=True)


def refuse_if_paused(directory: Path, key: str, *, grant: str, base: float, now: float,
                     login_command: str) -> None:
    """Raise :class:`LoginRequired` while a failed login's pause lasts."""
    if grant not in PAUSED_GRANTS:
        return
    last = read_failure(directory, key, now)
    if last is None:
        return
    left = last.at + last.pause(base) - now
    if left <= 0:
        return
    what = "device login" if last.grant == "device" else "browser login"
    ago = max(0, int(now - last.at))
    told = (f"the last {last.count} {what}s for this user failed or were cancelled, the last "
            f"{ago} s ago" if last.count > 1 else
            f"the last {what} for this user failed or was cancelled {ago} s ago")
    wait = int(left + 0.999)
    raise LoginRequired(f"{told}; dexkit opens no new one for {wait} s",
                        f"run the command again in {wait} s, or log in now: {login_command}")


def try_take(lock: FileLock) -> bool:
    """Take ``lock`` if it is free; never wait."""
    # filelock (~20 ms) only when a login must wait for another.
    from filelock import Timeout  # noqa: PLC0415

    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False
    return True


def in_turn(lock: FileLock, work: Callable[[], T], *, settled: Callable[[], T | None],
            wait: float, clock: Callable[[], float], sleep: Callable[[float], None],
            say: Callable[[str], None], login_command: str) -> T:
    """``work()`` while holding ``lock``, unless ``settled()`` answers first.

    ``settled()`` looks at what another login may have left (a token: the answer; a failure:
    it raises); it is asked before every try for the lock and once more with the lock held.
    While another process holds the lock, wait for it at most ``wait`` s, then give up.
    """
    deadline: float | None = None
    while True:
        found = settled()
        if found is not None:
            return found
        if try_take(lock):
            break
        now = clock()
        if deadline is None:
            deadline = now + wait
            say(f"dexkit: another login for this user is in progress; waiting up to "
                f"{int(wait)} s for it")
        elif now >= deadline:
            raise LoginRequired(f"another login for this user was still in progress after "
                                f"{int(wait)} s", "finish (or close) that login in the "
                                f"browser and run the command again, or log in now: "
                                f"{login_command}")
        sleep(POLL)
    try:
        found = settled()
        return found if found is not None else work()
    finally:
        lock.release()
