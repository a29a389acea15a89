"""The credential plugin's cached path, the cache's modes, and the ExecCredential it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dexkit.oidc.cache import TokenCache
from dexkit.oidc.options import identity_key, parse
from dexkit.oidc.plugin import exec_credential, exec_info, fresh_token

ISSUER = "https://127.0.0.1:32000"


def _key(*args: str) -> str:
    """The cache key of ``dexkit token --issuer ISSUER --client-id kubernetes ARGS``."""
    return identity_key(parse(["--issuer", ISSUER, "--client-id", "kubernetes", *args]))


def _token(exp: float) -> str:
    import base64

    def b64(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{b64({'alg': 'RS256'})}.{b64({'exp': int(exp), 'iss': ISSUER})}.sig"


def test_cache_files_are_private(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "cache")
    key = _key()
    cache.store(key, {"id_token": "t", "refresh_token": "r", "expiry": 1})
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "cache" / f"{key}.token").stat().st_mode & 0o777 == 0o600
    assert cache.load(key) == {"id_token": "t", "refresh_token": "r", "expiry": 1}
    with cache.lock(key):
        assert (tmp_path / "cache" / f"{key}.lock").exists()


def test_cache_key_depends_on_issuer_client_and_scopes() -> None:
    base = _key("--scope", "openid", "--scope", "groups")
    assert base == _key("--scope", "groups", "--scope", "openid")
    assert base != identity_key(parse(["--issuer", ISSUER + "/dex", "--client-id", "kubernetes",
                                       "--scope", "openid", "--scope", "groups"]))
    assert base != identity_key(parse(["--issuer", ISSUER, "--client-id", "other",
                                       "--scope", "openid", "--scope", "groups"]))
    assert base != _key("--scope", "openid")


def test_fresh_token_needs_more_than_a_minute() -> None:
    now = 1_000_000.0
    assert fresh_token({"id_token": "t", "expiry": now + 61}, now) == "t"
    assert fresh_token({"id_token": "t", "expiry": now + 59}, now) is None
    assert fresh_token(None, now) is None
    assert fresh_token({"id_token": "t"}, now) is None


def test_exec_credential_shape() -> None:
    data = json.loads(exec_credential("tok", 1_800_000_000, "client.authentication.k8s.io/v1"))
    assert data == {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                    "status": {"token": "tok", "expirationTimestamp": "2027-01-15T08:00:00Z"}}


def _run_plugin(tmp_path: Path, exec_info: dict[str, object] | None,
                *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_EXEC_INFO"}
    if exec_info is not None:
        env["KUBERNETES_EXEC_INFO"] = json.dumps(exec_info)
    code = ("import sys; from dexkit.__main__ import main\nmain(sys.argv[1:])\n")
    return subprocess.run([sys.executable, "-c", code, "token", "--issuer", ISSUER,
                           "--client-id", "kubernetes", "--cache-dir", str(tmp_path), *extra],
                          capture_output=True, text=True, env=env, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("version", ["client.authentication.k8s.io/v1",
                                     "client.authentication.k8s.io/v1beta1"])
def test_cached_path_answers_in_the_requested_version(tmp_path: Path, version: str) -> None:
    token, expiry = _token(time.time() + 3600), int(time.time() + 3600)
    TokenCache(tmp_path).store(_key(), {"id_token": token, "refresh_token": "r",
                                        "expiry": expiry})
    result = _run_plugin(tmp_path, {"apiVersion": version, "kind": "ExecCredential",
                                    "spec": {"interactive": False}})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["apiVersion"] == version
    assert data["status"]["token"] == token
    assert result.stderr == ""


def test_cached_path_imports_nothing_heavy(tmp_path: Path) -> None:
    expiry = int(time.time() + 3600)
    TokenCache(tmp_path).store(_key(), {"id_token": _token(expiry), "expiry": expiry})
    code = ("import sys\nfrom dexkit.__main__ import main\n"
            "try: main(sys.argv[1:])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('kubernetes', 'typer', 'rich', 'httpx', 'joserfc', 'msgspec',"
            " 'yaml', 'cryptography', 'json', 'argparse', 'filelock', 'typing', 're', 'enum',"
            " 'hashlib', 'dataclasses', 'pathlib',"
            # not heavy, but ~0.12 ms of every kubectl call: the modules of the cached path
            # do without 'from __future__ import annotations'
            " '__future__')"
            " if m in sys.modules]\nsys.stderr.write(repr(heavy))")
    result = subprocess.run([sys.executable, "-c", code, "token", "--issuer", ISSUER,
                             "--client-id", "kubernetes", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "KUBERNETES_EXEC_INFO": (
                                '{"kind":"ExecCredential","apiVersion":'
                                '"client.authentication.k8s.io/v1","spec":{"interactive":false}}'
                            )})
    assert result.stderr.strip() == "[]", result.stderr


def test_expired_cache_non_interactive_without_issuer_is_a_clear_error(tmp_path: Path) -> None:
    result = _run_plugin(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1",
                                    "spec": {"interactive": False}},
                         "--ca-file", str(tmp_path / "missing-ca.pem"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1",'
     '"spec":{"interactive":false}}', ("client.authentication.k8s.io/v1", False)),
    ('{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1beta1", '
     '"spec": {"interactive": true}}', ("client.authentication.k8s.io/v1beta1", True)),
    # a cluster extension that mentions an apiVersion too: json decides, not the scan
    ('{"apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false,'
     '"cluster":{"config":{"apiVersion":"client.authentication.k8s.io/v1beta1"}}}}',
     ("client.authentication.k8s.io/v1", False)),
    ('not json', ("client.authentication.k8s.io/v1", False)),
])
def test_exec_info_is_read_with_or_without_json(raw: str, expected: tuple[str, bool]) -> None:
    assert exec_info(raw, stdin_is_tty=True) == expected


def test_hand_written_json_is_json() -> None:
    text = exec_credential("a.b-c_d", 1_800_000_000, "client.authentication.k8s.io/v1beta1")
    assert json.loads(text)["status"]["token"] == "a.b-c_d"
    odd = exec_credential('we"ird', 1_800_000_000, "client.authentication.k8s.io/v1")
    assert json.loads(odd)["status"]["token"] == 'we"ird'


def test_cache_refuses_values_with_white_space(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="white space"):
        TokenCache(tmp_path).store("k", {"id_token": "a b", "expiry": 1})
    assert not (tmp_path / "k.token").exists()
