"""``dexkit token`` never tracebacks (issue 13, item 7), whatever kubectl, the cache or the user
hands it: bad KUBERNETES_EXEC_INFO, random cache bytes, absurd expiry, odd command lines.

The promise checked on every case: exit 0 (a credential) or 1/2 with exactly one ``error:``
and one ``hint:`` line and nothing on stdout; never a traceback; no cache file changed by a
failure; no secret (the cached token, a password) in the output. Property tests fuzz the
inputs in-process (the plugin's ``main``, nothing mocked but the terminal), with the network
closed: the issuer is a loopback port nobody listens on.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dexkit.oidc.cache import TokenCache
from dexkit.oidc.options import FLAGS, identity_key, parse
from dexkit.oidc.plugin import main as plugin_main

SECRET_PASSWORD = "pw-9f3c1e2a-never-printed"
EXAMPLES = int(os.environ.get("DEXKIT_FUZZ_EXAMPLES", "0"))  # a long run: nox -s fuzz


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ISSUER = f"https://127.0.0.1:{_closed_port()}"
BASE = ["--issuer", ISSUER, "--client-id", "kubernetes"]


def _jwt(exp: int) -> str:
    def b64(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{b64({'alg': 'RS256'})}.{b64({'iss': ISSUER, 'exp': exp})}.c2ln"


@pytest.fixture(autouse=True)
def refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The closed port refuses every connection: no retry window (discovery.CONNECT_RETRY)
    for each of the thousands of generated calls."""
    from dexkit.oidc import discovery

    monkeypatch.setattr(discovery, "CONNECT_RETRY", 0.0)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "cache"
    # a generated command line may name a relative cache directory: keep it in tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file where a cache directory is asked for\n")
    monkeypatch.setenv("DEXKIT_TOKEN_CACHE", str(directory))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KUBECACHEDIR", "DEXKIT_PASSWORD", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    yield directory


def _call(argv: list[str], exec_info: str | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("KUBERNETES_EXEC_INFO")
    if exec_info is None:
        os.environ.pop("KUBERNETES_EXEC_INFO", None)
    else:
        os.environ["KUBERNETES_EXEC_INFO"] = exec_info
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = plugin_main(argv)
    finally:
        if saved is None:
            os.environ.pop("KUBERNETES_EXEC_INFO", None)
        else:
            os.environ["KUBERNETES_EXEC_INFO"] = saved
    return code, out.getvalue(), err.getvalue()


def _assert_promise(code: int, out: str, err: str, *secrets: str) -> None:
    assert "Traceback" not in err
    assert "report it as a bug" not in err, err  # a user's mistake is not dexkit's bug
    for secret in (SECRET_PASSWORD, *secrets):
        assert secret not in out + err
    if code == 0:
        assert json.loads(out)["kind"] == "ExecCredential"
        return
    assert code in (1, 2), (code, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert [x for x in lines if x.startswith("error: ")] == [lines[-2]], err
    assert [x for x in lines if x.startswith("hint: ")] == [lines[-1]], err


def _snapshot(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix == ".token"}


@pytest.mark.parametrize("exec_info", ["[1]", "null", '"x"', '{"spec":"x"}', "{", "1e999",
                                       '{"apiVersion": 5}', '{"spec": {"interactive": "yes"}}',
                                       '{"apiVersion":"client.authentication.k8s.io/v1",'
                                       '"spec":null}', "\udcff"])
def test_bad_exec_info_is_never_a_traceback(cache_dir: Path, exec_info: str) -> None:
    code, out, err = _call(BASE, exec_info)
    _assert_promise(code, out, err)
    assert code == 1  # nothing cached, no browser here: a clear failure


@pytest.mark.parametrize("raw", [os.urandom(64), b"\x00" * 10, b"expiry 99999999999999999999\n"
                                 b"id_token a.b.c\n", b"id_token a.b.c\nexpiry -5\n",
                                 b"id_token \xff\xfe\nexpiry 1900000000\n", b"expiry\n",
                                 b"id_token a.b.c\nexpiry 1e9\n", b""])
def test_damaged_cache_entries_are_no_entry(cache_dir: Path, raw: bytes) -> None:
    key = identity_key(parse(BASE))
    cache_dir.mkdir(mode=0o700)
    path = cache_dir / f"{key}.token"
    path.write_bytes(raw)
    path.chmod(0o600)
    code, out, err = _call(BASE, None)
    _assert_promise(code, out, err)
    assert path.read_bytes() == raw, "a failure changes no cache file"


def test_absurd_but_valid_looking_expiry_is_refused(cache_dir: Path) -> None:
    key = identity_key(parse(BASE))
    cache_dir.mkdir(mode=0o700)
    path = cache_dir / f"{key}.token"
    path.write_text(f"id_token {_jwt(2**40)}\nexpiry 99999999999999\n")
    path.chmod(0o600)
    code, out, err = _call(BASE, None)
    _assert_promise(code, out, err)
    assert code == 1


def test_a_cache_file_others_can_read_is_not_served(cache_dir: Path) -> None:
    expiry = int(time.time()) + 3600
    token = _jwt(expiry)
    TokenCache(cache_dir).store(identity_key(parse(BASE)), {"id_token": token,
                                                            "expiry": expiry})
    assert _call(BASE, None)[0] == 0
    (entry,) = cache_dir.glob("*.token")
    entry.chmod(0o644)
    code, out, err = _call(BASE, None)
    _assert_promise(code, out, err, token)


def test_password_on_the_command_line_is_warned_and_never_echoed(cache_dir: Path) -> None:
    code, out, err = _call([*BASE, "--grant", "password", "--username", "a@example.com",
                            "--password", SECRET_PASSWORD], None)
    _assert_promise(code, out, err)
    assert "warning: --password puts the password in the process's arguments" in err


@pytest.mark.parametrize("flag", ["--authentication-timeout-sec", "--username",
                                  "--listen-address"])
def test_a_forgotten_value_never_takes_the_password_option_for_it(cache_dir: Path,
                                                                   flag: str) -> None:
    # found by the fuzzer in CI: "--authentication-timeout-sec --password=..." echoed the
    # password as the timeout that was "not a positive number of seconds"
    code, out, err = _call([*BASE, flag, f"--password={SECRET_PASSWORD}"], None)
    _assert_promise(code, out, err)
    assert code == 2
    assert f"error: {flag} needs a value; --password is the next option" in err


def test_cached_path_through_the_real_entry_point_prints_the_credential(
        cache_dir: Path) -> None:
    expiry = int(time.time()) + 3600
    TokenCache(cache_dir).store(identity_key(parse(BASE)), {"id_token": _jwt(expiry),
                                                            "expiry": expiry})
    result = subprocess.run([sys.executable, "-m", "dexkit", "get-token",
                             f"--oidc-issuer-url={ISSUER}", "--oidc-client-id=kubernetes",
                             "--grant-type=authcode"],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "DEXKIT_TOKEN_CACHE": str(cache_dir)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"]["token"] == _jwt(expiry)


# --- fuzzing ------------------------------------------------------------------------------------

# Never another issuer: a generated one could make the plugin look up a name off this machine.
FLAG_NAMES = st.sampled_from(sorted(set(FLAGS) - {"--issuer", "--oidc-issuer-url", "--help",
                                                  "-h"}))
WORDS = st.one_of(FLAG_NAMES, st.text(max_size=12), st.sampled_from(
    ["--", "-", "=", "--grant=nope", "--listen-address=[::1]:x", "--token-cache-storage=mud",
     "--authentication-timeout-sec=-1", "--certificate-authority-data=@@@",
     "--oidc-auth-request-extra-params=novalue", "--insecure=maybe", "--oidc-pkce-method=no",
     "--local-server-cert=x", f"--password={SECRET_PASSWORD}",
     # issue 20 (N-04, N-14): a value never echoed, however it is given; a cache directory
     # that cannot be made is the user's to fix
     f"--password {SECRET_PASSWORD}", f"--oidc-client-secret {SECRET_PASSWORD}",
     f" --password={SECRET_PASSWORD}", SECRET_PASSWORD, f"--insecure={SECRET_PASSWORD}",
     "--token-cache-dir=afile/sub", "--allow-insecure-http"]))
# Loopback issuers only (nothing off this machine is ever asked), spelled every way dexkit token
# must refuse or warn about (N-05, N-06, N-14).
ISSUERS = st.sampled_from([ISSUER, f"{ISSUER}/\x1b]0;x\x07", f"{ISSUER}:1",
                           "http" + ISSUER.removeprefix("https"),
                           ISSUER.replace("//", f"//admin:{SECRET_PASSWORD}@")])
EXEC_INFOS = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(
    ['{"apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}',
     '{"apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":true}}']),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                     st.sampled_from(["apiVersion", "spec", "interactive", "kind"]), inner,
                     max_size=3), max_leaves=6).map(json.dumps)).filter(
    lambda text: text is None or "\x00" not in text) | st.sampled_from(
    ["[" * 100_000, '{"spec":' * 50_000])  # nested past the recursion limit (N-14)


@settings(max_examples=EXAMPLES or 400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(WORDS, max_size=8), exec_info=EXEC_INFOS, base=st.booleans(),
       issuer=ISSUERS)
def test_fuzz_command_line_and_exec_info(cache_dir: Path, argv: list[str],
                                         exec_info: str | None, base: bool,
                                         issuer: str) -> None:
    argv = [a for a in argv if a.partition("=")[0] not in ("--help", "-h", "--issuer",
                                                          "--oidc-issuer-url")]
    argv = [a for a in argv if "\x00" not in a]  # execve's arguments are C strings
    before = _snapshot(cache_dir)
    first = ["--issuer", issuer, "--client-id", "kubernetes"]
    code, out, err = _call((first if base else []) + argv, exec_info)
    _assert_promise(code, out, err)
    assert not any(ch in out + err for ch in "\x1b\x07\r"), err  # N-12
    if code != 0:
        assert _snapshot(cache_dir) == before


@settings(max_examples=EXAMPLES or 300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       exec_info=EXEC_INFOS)
def test_fuzz_cache_bytes(cache_dir: Path, raw: bytes, exec_info: str | None) -> None:
    key = identity_key(parse(BASE))
    cache_dir.mkdir(mode=0o700, exist_ok=True)
    path = cache_dir / f"{key}.token"
    path.write_bytes(raw)
    path.chmod(0o600)
    code, out, err = _call(BASE, exec_info)
    _assert_promise(code, out, err)
    if code != 0:
        assert path.read_bytes() == raw
