"""What may reach a terminal or a log: the one rule every printer applies.

Rules, in the order they act:

1. Secrets are named, never shown. The password in a URL's userinfo (``https://u:pw@h``)
   becomes ``***`` (the user name goes with it: ``https://***@h``); when the URL is malformed
   (an ``@`` after a ``/``, as in ``https://u:p/w@h``) everything up to the last ``@`` goes,
   because a message that hides too much is better than a password in a CI log. The value of
   an option that carries a secret (``--password=X``, ``--oidc-client-secret=X``) becomes
   ``***``. In an argument list (:func:`argv`) the value after such an option goes too, in
   every spelling kubectl's ``args:`` can produce (``--password X`` as one item included).
2. Nothing a terminal acts on is printed as it is: ESC (colours, OSC window titles, cursor
   moves), CR (a line that overwrites itself), other C0 and C1 controls and DEL are shown
   escaped (``\\x1b``). In a line of chatter (:func:`line`) a newline, a tab and any other
   character Python does not call printable (bidi overrides included) are escaped too, so one
   line stays one line; in data (:func:`controls`) newlines, tabs and CRs are kept.

:mod:`dexkit.console` applies :func:`line` to every line it prints and :func:`controls` to
data, and ``dexkit token``'s lean path applies :func:`one_line` to its error lines, so no caller
can forget it. Import-free on purpose: ``dexkit token``'s error path uses it.
"""

from __future__ import annotations

# Options whose value is a secret (kubelogin's spellings included).
SECRET_OPTIONS = ("--password", "--oidc-client-secret", "--client-secret")
HIDDEN = "***"
# Where a word ends on the way back from an '@': text around a URL in a message.
_BOUNDARY = " \t\n\r'\"`<>(),;="


def userinfo_span(value: str) -> tuple[int, int] | None:
    """Where ``user:password`` sits in a URL, however malformed the rest (``https:/u:p@h``,
    ``u:p@h``): before the last '@' of the part that comes before any '/', '?' or '#'."""
    start = _after_scheme(value)
    end = len(value)
    for stop in "/?#":
        found = value.find(stop, start)
        if found >= 0:
            end = min(end, found)
    at = value.rfind("@", start, end)
    return (start, at) if at >= 0 else None


def url(value: str) -> str:
    """``value`` (a URL, or something meant as one) with its userinfo hidden."""
    span = userinfo_span(value)
    if span is None and "@" in value:
        span = (_after_scheme(value), value.rfind("@"))  # an '@' after a '/': all up to it
    return value if span is None else value[:span[0]] + HIDDEN + value[span[1]:]


def _after_scheme(value: str) -> int:
    """Where a URL's authority starts: after ``scheme:`` and its slashes (0 without one; in
    ``user:pw@host`` the ``user:`` is not a scheme, since no '/' follows it)."""
    colon = value.find(":")
    if colon <= 0 or not value[0].isalpha() or not value.startswith("/", colon + 1):
        return 0
    if not value[:colon].isascii() or not all(ch.isalnum() or ch in "+.-"
                                               for ch in value[:colon]):
        return 0
    end = colon + 1
    while end < len(value) and value[end] == "/":
        end += 1
    return end


def text(value: str) -> str:
    """Rule 1 on free text: every URL's userinfo and every ``--secret-option=value`` hidden."""
    if "@" in value:
        value = _urls(value)
    if "--" in value:
        value = _options(value)
    return value


def _urls(value: str) -> str:
    out: list[str] = []
    word: list[str] = []
    for ch in value:
        if ch in _BOUNDARY:
            out.append(_url_in_word("".join(word)))
            out.append(ch)
            word = []
        else:
            word.append(ch)
    out.append(_url_in_word("".join(word)))
    return "".join(out)


def _url_in_word(word: str) -> str:
    """``word`` with the userinfo of a URL in it hidden (``x@https://u:p@h`` included)."""
    at = word.rfind("@")
    scheme = word.find(":/")
    if at < 0 or scheme < 0 or scheme > at:
        return word
    lead = scheme
    while lead > 0 and ((word[lead - 1].isascii() and word[lead - 1].isalnum())
                        or word[lead - 1] in "+.-"):
        lead -= 1
    if lead == scheme:
        return word
    return word[:lead] + url(word[lead:])


def _options(value: str) -> str:
    for option in SECRET_OPTIONS:
        marker = option + "="
        start = value.find(marker)
        while start >= 0:
            begin = start + len(marker)
            if start > 0 and value[start - 1] not in _BOUNDARY:  # --x-password=...
                start = value.find(marker, begin)
                continue
            end = begin
            quote = value[begin:begin + 1]
            if quote in ("'", '"'):
                close = value.find(quote, begin + 1)
                end = len(value) if close < 0 else close + 1
            else:
                while end < len(value) and not value[end].isspace() and value[end] not in "'\"":
                    end += 1
            if end > begin:
                value = value[:begin] + HIDDEN + value[end:]
            start = value.find(marker, begin + len(HIDDEN))
    return value


def argv(args: list[str] | tuple[str, ...]) -> list[str]:
    """An argument list safe to show: the value of every secret option hidden, whether it is
    ``--password=X``, ``--password X`` (two items) or ``'--password X'`` (one item, the usual
    mistake in a kubeconfig's ``args:``)."""
    shown: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            shown.append(HIDDEN)
            hide_next = False
            continue
        name = arg.split("=", 1)[0].split(None, 1)[0] if arg.strip() else arg
        if name in SECRET_OPTIONS:
            if arg == name:
                hide_next = True
                shown.append(arg)
            else:
                shown.append(name + ("=" if "=" in arg and " " not in name else " ") + HIDDEN)
            continue
        shown.append(text(arg))
    return shown


def controls(value: str) -> str:
    """Rule 2 for data: C0 controls but tab, newline and CR, DEL and C1 controls escaped;
    everything else (YAML's own text, any language, emoji sequences) exactly as given."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(ch if ch in "\t\n\r" or not _is_control(ch) else _escape(ch) for ch in value)


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _escape(ch: str) -> str:
    return ascii(ch)[1:-1]


def line(value: str) -> str:
    """One line of chatter, safe: secrets hidden, and anything not printable escaped
    (newlines and tabs included)."""
    value = text(value)
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in value)


def one_line(value: str) -> str:
    """An error or hint line: white space runs (a library's multi-line text) made one space,
    then :func:`line`."""
    return line(" ".join(value.split()))
