"""Peers: version mapping, go.mod replace parsing, manifests, locating, and the build flow."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dexkit.errors import DexkitError, UsageError
from dexkit.sandbox import peers

DATA = Path(__file__).parent / "data"
# The real go.mod of k8s.io/kubernetes v1.34.4, as `go mod download -json` fetched it (GoMod).
KUBERNETES_GOMOD = DATA / "kubernetes-v1.34.4.go.mod"


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("wanted", "expected"), [
    (None, "1.37.2"),
    ("1.37", "1.37.2"),
    ("v1.35", "1.35.4"),
    ("1.36", "1.36.3"),
    ("v1.37", "1.37.2"),
    ("1.37.2", "1.37.2"),
    ("v1.35.1", "1.35.1"),
])
def test_kubernetes_versions_map_to_served_releases(wanted: str | None, expected: str) -> None:
    assert peers.resolve_kubernetes_version(wanted) == expected


@pytest.mark.parametrize("wanted", ["1.34", "1.38.0", "2.0", "latest", "1"])
def test_unserved_or_malformed_kubernetes_versions_are_usage_errors(wanted: str) -> None:
    with pytest.raises(UsageError) as info:
        peers.resolve_kubernetes_version(wanted)
    assert "1.35, 1.36, 1.37" in info.value.hint


def test_staging_modules_follow_the_minor_and_patch() -> None:
    assert peers.staging_version("1.34.4") == "v0.34.4"
    assert peers.staging_version("v1.37.2") == "v0.37.2"


def test_kubernetes_ldflags_set_both_version_packages() -> None:
    flags = peers.kubernetes_ldflags("1.35.4", commit="abc", build_date="2026-01-01T00:00:00Z")
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v1.35.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=35" in flags
    assert "-X k8s.io/component-base/version.gitCommit=abc" in flags
    assert all(f.startswith("-X ") and " " not in f[3:] for f in flags)


def test_pseudo_version_uses_utc_committer_time_and_twelve_hex_digits() -> None:
    committed = dt.datetime(2026, 3, 3, 9, 8, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    version = peers.pseudo_version(peers.DEX_COMMIT, committed)
    assert version == "v0.0.0-20260303070807-11d2eeb52b42"
    peers.check_pseudo_version(version, peers.DEX_COMMIT)


def test_pseudo_version_checks() -> None:
    with pytest.raises(UsageError):
        peers.pseudo_version("not-a-hash", dt.datetime.now(dt.UTC))
    with pytest.raises(UsageError):
        peers.pseudo_version(peers.DEX_COMMIT, dt.datetime(2026, 3, 3))  # naive: no zone
    with pytest.raises(UsageError, match="names commit"):
        peers.check_pseudo_version("v0.0.0-20260303070807-aaaaaaaaaaaa", peers.DEX_COMMIT)
    with pytest.raises(UsageError, match=r"not a v0\.0\.0 pseudo-version"):
        peers.check_pseudo_version("v2.45.1", peers.DEX_COMMIT)


# --- go.mod ---------------------------------------------------------------------------------


def test_staging_modules_come_from_the_real_kubernetes_gomod() -> None:
    modules = peers.staging_modules(KUBERNETES_GOMOD.read_text())
    assert len(modules) == 31
    for expected in ("k8s.io/api", "k8s.io/apimachinery", "k8s.io/apiserver", "k8s.io/client-go",
                     "k8s.io/component-base", "k8s.io/kubectl", "k8s.io/externaljwt"):
        assert expected in modules
    assert modules == sorted(modules)
    # They are required at v0.0.0 (the reason for the replaces), some only indirectly: the
    # samples are replaced but not required, and replacing them too is harmless.
    text = KUBERNETES_GOMOD.read_text()
    required = [m for m in modules if f"\t{m} v0.0.0\n" in text]
    assert len(required) == 29
    assert set(modules) - set(required) == {"k8s.io/sample-cli-plugin",
                                            "k8s.io/sample-controller"}


def test_replace_forms_comments_and_non_local_targets() -> None:
    gomod = textwrap.dedent("""\
        module example.com/x

        // replace k8s.io/commented => ./staging/src/k8s.io/commented
        replace k8s.io/single => ./staging/src/k8s.io/single
        replace k8s.io/versioned v0.0.0 => ./staging/src/k8s.io/versioned // why
        replace (
            k8s.io/in-block => ./staging/src/k8s.io/in-block
            github.com/fork/lib => github.com/other/lib v1.2.3
            example.com/vendored => ../vendored
        )
        require k8s.io/single v0.0.0
        """)
    replaces = peers.parse_replaces(gomod)
    by_path = {r.path: r for r in replaces}
    assert set(by_path) == {"k8s.io/single", "k8s.io/versioned", "k8s.io/in-block",
                            "github.com/fork/lib", "example.com/vendored"}
    assert by_path["k8s.io/versioned"].version == "v0.0.0"
    assert by_path["github.com/fork/lib"].target_version == "v1.2.3"
    assert not by_path["github.com/fork/lib"].is_local
    assert by_path["example.com/vendored"].is_local
    assert peers.staging_modules(gomod) == ["k8s.io/in-block", "k8s.io/single", "k8s.io/versioned"]


def test_a_gomod_without_staging_modules_is_an_error() -> None:
    with pytest.raises(DexkitError, match="no staging modules"):
        peers.staging_modules("module x\n\nrequire k8s.io/api v0.34.4\n")


# --- specs, cache and manifests -------------------------------------------------------------


def test_peer_specs() -> None:
    apiserver = peers.peer_spec("kube-apiserver", "1.36")
    assert (apiserver.version, apiserver.module, apiserver.module_version, apiserver.package) == (
        "1.36.3", "k8s.io/kubernetes", "v1.36.3", "k8s.io/kubernetes/cmd/kube-apiserver")
    etcd = peers.peer_spec("etcd")
    # kubeadm 1.37's DefaultEtcdVersion is 3.7.0-0.
    assert (etcd.module, etcd.module_version, etcd.package) == (
        "go.etcd.io/etcd/server/v3", "v3.7.0", "go.etcd.io/etcd/server/v3")
    dex = peers.peer_spec("dex", env={"DEXKIT_DEX_MODULE_VERSION": "v0.0.0-1-abc"})
    assert dex.cgo is False and dex.package == "github.com/dexidp/dex/cmd/dex"
    assert dex.module_version == "v0.0.0-1-abc"
    assert dex.key == "dex-2.45.1"
    kubeadm = peers.peer_spec("kubeadm")
    assert (kubeadm.version, kubeadm.package) == ("1.37.2", "k8s.io/kubernetes/cmd/kubeadm")
    with pytest.raises(UsageError):
        peers.peer_spec("kind-of-peer")


def test_dex_main_is_a_commit_named_as_dex_names_it() -> None:
    main = peers.peer_spec("dex", env={"DEXKIT_DEX_MODULE_VERSION": "v0.0.0-1-abc"},
                           dex="main")
    # The override is for the release; main stays the pinned commit.
    assert main.module_version == "v0.0.0-20260806151424-ab64ed778070"
    assert main.version == "2.46.0-20260806171424-ab64ed77"
    assert main.key == "dex-2.46.0-20260806171424-ab64ed77"
    assert main.ldflags == ("-X main.version=v2.46.0-20260806171424-ab64ed77",)
    # Committed 2026-08-06T17:14:24+02:00.
    committed = dt.datetime(2026, 8, 6, 17, 14, 24, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert main.module_version == peers.pseudo_version(peers.DEX_MAIN.commit, committed)
    assert not peers.DEX_MAIN.is_release and "not a release" in peers.DEX_MAIN.what
    assert peers.dex_build_for_image("dexkit.local/dex:v2.46.0-20260806171424-ab64ed77") == \
        "main"
    assert peers.dex_build_for_image("ghcr.io/dexidp/dex:v2.45.1") == "release"
    assert peers.dex_build_for_image("ghcr.io/dexidp/dex:latest") is None
    assert peers.dex_build_for_image("localhost:5000/dex") is None
    with pytest.raises(UsageError, match="unknown Dex build 'nightly'"):
        peers.peer_spec("dex", dex="nightly")


@pytest.mark.parametrize("name", peers.NODE_PEERS)
def test_node_peers_come_from_the_kubernetes_module_group(name: str) -> None:
    spec = peers.peer_spec(name, "1.35")
    apiserver = peers.peer_spec("kube-apiserver", "1.35")
    # One (module, version) group: built from the same generated module as kube-apiserver.
    assert (spec.module, spec.module_version) == (apiserver.module, apiserver.module_version)
    assert spec.package == f"k8s.io/kubernetes/cmd/{name}"
    assert spec.version == "1.35.4"
    assert peers.ENV_OVERRIDES[name].startswith("DEXKIT_KUBE")


def test_select_peers() -> None:
    assert peers.select_peers(None) == ["etcd", "kube-apiserver", "kubectl", "dex"]
    assert peers.select_peers(["kubectl", "etcd"]) == ["etcd", "kubectl"]
    assert peers.select_peers(["node"]) == list(peers.NODE_PEERS)
    assert peers.select_peers(["kubelet", "etcd"]) == ["etcd", "kubelet"]
    assert peers.select_peers(["kubeadm"]) == ["kubeadm"]
    with pytest.raises(UsageError, match="unknown peer 'kubeam'"):
        peers.select_peers(["kubeam"])


def test_cache_root_precedence(tmp_path: Path) -> None:
    assert peers.cache_root({"DEXKIT_CACHE_DIR": str(tmp_path / "c")}) == tmp_path / "c"
    assert peers.cache_root({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "dexkit"
    assert peers.cache_root({}).parts[-2:] == (".cache", "dexkit")


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _manifest(name: str = "etcd") -> peers.Manifest:
    return peers.Manifest(name=name, version="3.7.0", module="go.etcd.io/etcd/server/v3",
                          module_version="v3.7.0", package="go.etcd.io/etcd/server/v3",
                          go_version="go1.26.8", sha256="0" * 64,
                          built_at="2026-11-29T00:00:00+00:00", build_seconds=1.5,
                          ldflags=())


def test_manifest_round_trips_and_ignores_unknown_keys() -> None:
    manifest = _manifest()
    data = json.loads(manifest.to_json())
    assert data["ldflags"] == [] and data["sha256"] == "0" * 64
    data["from_the_future"] = 1
    assert peers.Manifest.from_json(json.dumps(data)) == manifest


def test_locate_env_override_then_cache_then_missing(tmp_path: Path) -> None:
    spec = peers.peer_spec("etcd")
    root = tmp_path / "cache"
    missing = peers.locate(spec, root=root, env={})
    assert missing.source == "missing" and not missing.available
    assert missing.path == root / "bin" / "etcd-3.7.0" / "etcd"

    binary = _executable(missing.path)
    assert peers.locate(spec, root=root, env={}).source == "missing"  # no manifest: not built
    (binary.parent / peers.MANIFEST).write_text(_manifest().to_json())
    cached = peers.locate(spec, root=root, env={})
    assert cached.source == "cache" and cached.manifest == _manifest()

    override = _executable(tmp_path / "elsewhere" / "etcd")
    found = peers.locate(spec, root=root, env={"DEXKIT_ETCD": str(override)})
    assert (found.source, found.path) == ("env", override)
    with pytest.raises(DexkitError, match="DEXKIT_ETCD"):
        peers.locate(spec, root=root, env={"DEXKIT_ETCD": str(tmp_path / "nope")})


def test_an_entry_built_from_something_else_is_rebuilt_over(tmp_path: Path) -> None:
    """An older dexkit (or an override) may have left a binary under today's name that was
    built from another module version or with other flags: it is not taken for today's."""
    spec = peers.peer_spec("etcd")
    root = tmp_path / "cache"
    binary = _executable(peers.locate(spec, root=root, env={}).path)
    for stale in (dict(module_version="v3.6.16"), dict(package="go.etcd.io/etcd/v3"),
                  dict(ldflags=("-X a=b",))):
        manifest = _manifest()
        (binary.parent / peers.MANIFEST).write_text(
            peers.Manifest(**{**manifest.__dict__, **stale}).to_json())
        assert peers.locate(spec, root=root, env={}).source == "missing", stale


def test_require_peer_says_how_to_build(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEXKIT_KUBE_APISERVER", raising=False)
    with pytest.raises(DexkitError) as info:
        peers.require_peer("kube-apiserver", "1.35", root=tmp_path)
    assert "kube-apiserver 1.35.4 is not built" in info.value.message
    assert "dexkit sandbox build --only kube-apiserver --kubernetes-version 1.35.4" in \
        info.value.hint


# --- the build flow, with a stand-in for `go` -----------------------------------------------

FAKE_GO = """\
#!{python}
# A stand-in for `go`: records its arguments, fakes the few commands the build uses.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GO_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "cgo": os.environ.get("CGO_ENABLED"),
                          "toolchain": os.environ.get("GOTOOLCHAIN"),
                          "proxy": os.environ.get("GOPROXY"),
                          "nosumdb": os.environ.get("GONOSUMDB")}}) + "\\n")
if args[:2] == ["env", "GOVERSION"]:
    print("go1.99.0")
elif args[:2] == ["env", "GOPROXY"]:
    print("https://proxy.example.test,direct")
elif args[:2] == ["mod", "init"]:
    open("go.mod", "w").write("module " + args[2] + "\\n")
elif args[:3] == ["mod", "download", "-json"]:
    print(json.dumps({{"Path": "x", "Version": "v1", "GoMod": os.environ["FAKE_GOMOD"]}}))
elif args[:2] == ["mod", "vendor"]:
    pkg = os.path.join("vendor", "github.com/dexidp/dex/server/apiserver")
    os.makedirs(pkg, exist_ok=True)
    for name in ("api.go", "clients.go"):
        open(os.path.join(pkg, name), "w").write("package apiserver\\n")
elif args[0] == "build":
    if os.environ.get("FAKE_GO_SLEEP"):
        import time
        time.sleep(float(os.environ["FAKE_GO_SLEEP"]))
    if os.environ.get("FAKE_GO_FAIL"):
        print("compile error: something broke", file=sys.stderr)
        sys.exit(2)
    out = args[args.index("-o") + 1]
    open(out, "w").write("#!/bin/sh\\necho built\\n")
    os.chmod(out, 0o755)
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    go = _executable(tmp_path / "bin" / "go", FAKE_GO.format(python=sys.executable))
    monkeypatch.setenv("FAKE_GO_LOG", str(tmp_path / "go-calls.jsonl"))
    monkeypatch.setenv("FAKE_GOMOD", str(KUBERNETES_GOMOD))
    return go


def _calls(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "go-calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_build_generates_one_kubernetes_module_with_staging_replaces(
        tmp_path: Path, fake_go: Path) -> None:
    lines: list[str] = []
    root = tmp_path / "cache"
    specs = [peers.peer_spec("kube-apiserver", "1.37"), peers.peer_spec("kubectl", "1.37")]
    manifests = peers.build_peers(specs, progress=lines.append, root=root, go=str(fake_go))

    assert [m.name for m in manifests] == ["kube-apiserver", "kubectl"]
    for manifest in manifests:
        binary = root / "bin" / f"{manifest.name}-1.37.2" / manifest.name
        assert os.access(binary, os.X_OK)
        assert manifest.sha256 == peers.sha256_file(binary)
        assert manifest.go_version == "go1.99.0"
        assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in manifest.ldflags
        assert peers.locate(peers.peer_spec(manifest.name), root=root, env={}).source == "cache"
    calls = [c["args"] for c in _calls(tmp_path)]
    edit = next(c for c in calls if c[:2] == ["mod", "edit"])
    assert len(edit) == 2 + 31
    assert "-replace=k8s.io/api=k8s.io/api@v0.37.2" in edit
    gets = [c for c in calls if c[0] == "get"]
    assert gets == [["get", "k8s.io/kubernetes/cmd/kube-apiserver@v1.37.2",
                     "k8s.io/kubernetes/cmd/kubectl@v1.37.2"]]
    assert sum(1 for c in calls if c[0] == "build") == 2
    assert all(c["toolchain"] == "local" for c in _calls(tmp_path))
    # Never the source hosts behind the proxy's back.
    assert {c["proxy"] for c in _calls(tmp_path) if c["args"][0] in ("mod", "get", "build")} \
        == {"https://proxy.example.test"}
    # One line per step, each finished step with its time.
    assert any("replacing 31 staging modules with their v0.37.2 releases" in line
               for line in lines)
    assert any(line.startswith("[kubernetes 1.37.2] done compiling kube-apiserver (")
               for line in lines)
    assert not list((root / "bin").rglob(".*.partial"))

    # Built peers are not built again.
    again: list[str] = []
    assert peers.build_peers(specs, progress=again.append, root=root, go=str(fake_go)) == []
    assert all("already built" in line for line in again)


def test_two_builds_of_one_release_at_once_build_it_once(
        tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two test processes (or terminals) asking for one release share its generated module:
    # the second waits for the first, then finds the binaries built.
    monkeypatch.setenv("FAKE_GO_SLEEP", "0.5")
    root = tmp_path / "cache"
    compiling = threading.Event()
    first_lines: list[str] = []
    second_lines: list[str] = []

    def first_progress(line: str) -> None:
        first_lines.append(line)
        if "compiling" in line:
            compiling.set()

    results: dict[str, list[peers.Manifest]] = {}

    def build(key: str, progress: Callable[[str], None]) -> None:
        results[key] = peers.build_peers([peers.peer_spec("kube-apiserver", "1.37")],
                                         progress=progress, root=root, go=str(fake_go))

    first = threading.Thread(target=build, args=("first", first_progress))
    first.start()
    assert compiling.wait(30)
    build("second", second_lines.append)
    first.join(30)

    assert [m.name for m in results["first"]] == ["kube-apiserver"]
    assert results["second"] == []
    assert any("another build of this release is running; waiting for it" in line
               for line in second_lines)
    assert any("built by the other build meanwhile" in line for line in second_lines)
    assert sum(1 for c in _calls(tmp_path) if c["args"][0] == "build") == 1


def test_dex_is_built_without_cgo(tmp_path: Path, fake_go: Path) -> None:
    spec = peers.peer_spec("dex", env={"DEXKIT_DEX_MODULE_VERSION":
                                       "v0.0.0-20260303070807-11d2eeb52b42"})
    [manifest] = peers.build_peers([spec], progress=lambda _: None, root=tmp_path / "c",
                                   go=str(fake_go))
    assert manifest.cgo is False
    build = next(c for c in _calls(tmp_path) if c["args"][0] == "build")
    assert build["cgo"] == "0"
    assert build["args"][-1] == "github.com/dexidp/dex/cmd/dex"
    assert not any(c["args"][:2] == ["mod", "edit"] for c in _calls(tmp_path))


def test_dex_main_is_built_with_its_grpc_api_package_replaced_and_says_so(
        tmp_path: Path, fake_go: Path) -> None:
    spec = peers.peer_spec("dex", dex="main")
    root = tmp_path / "c"
    [manifest] = peers.build_peers([spec], progress=lambda _: None, root=root, go=str(fake_go))
    assert manifest.replaced == ("github.com/dexidp/dex/server/apiserver",)
    build = next(c for c in _calls(tmp_path) if c["args"][0] == "build")
    assert "-mod=vendor" in build["args"]
    overlay_arg = next(a for a in build["args"] if a.startswith("-overlay="))
    overlay = json.loads(Path(overlay_arg.split("=", 1)[1]).read_text())["Replace"]
    vendored = {k: v for k, v in overlay.items() if k.endswith(("api.go", "clients.go"))}
    assert len(vendored) == 2 and set(vendored.values()) == {None}  # Dex's files left out
    (ours,) = [v for k, v in overlay.items() if k.endswith("dexkit.go")]
    assert "func NewAPI(" in Path(ours).read_text()
    assert "without its gRPC admin API" in peers.DEX_MAIN.what
    assert peers.locate(spec, root=root, env={}).available
    # A release build of the same name without the replacement is not taken for it.
    plain = peers.Manifest(**{**manifest.__dict__, "replaced": ()})
    (peers.binary_dir(spec, root) / peers.MANIFEST).write_text(plain.to_json())
    assert not peers.locate(spec, root=root, env={}).available


def test_helm_is_built_from_its_module_with_its_version_stamped(tmp_path: Path,
                                                                fake_go: Path) -> None:
    [manifest] = peers.build_peers([peers.peer_spec("helm")], progress=lambda _: None,
                                   root=tmp_path / "c", go=str(fake_go))
    assert (manifest.module, manifest.module_version) == ("helm.sh/helm/v4", "v4.3.2")
    build = next(c for c in _calls(tmp_path) if c["args"][0] == "build")
    assert build["args"][-1] == "helm.sh/helm/v4/cmd/helm"
    assert build["cgo"] == "0"
    assert "-X helm.sh/helm/v4/internal/version.version=v4.3.2" in " ".join(build["args"])
    assert peers.locate(peers.peer_spec("helm"), root=tmp_path / "c", env={}).available


def test_only_kubelogin_itself_skips_the_checksum_database(
        tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GONOSUMDB", raising=False)
    root = tmp_path / "c"
    peers.build_peers([peers.peer_spec("etcd")], progress=lambda _: None, root=root,
                      go=str(fake_go))
    assert all(c["nosumdb"] is None for c in _calls(tmp_path))
    [manifest] = peers.build_peers([peers.peer_spec("kubelogin")], progress=lambda _: None,
                                   root=root, go=str(fake_go))
    kubelogin_calls = [c for c in _calls(tmp_path) if c["args"][0] in ("get", "build")
                       and str(c["args"][-1]).startswith("github.com/int128/kubelogin")]
    assert kubelogin_calls
    assert all(c["nosumdb"] == "github.com/int128/kubelogin" for c in kubelogin_calls)
    assert manifest.unverified == ("github.com/int128/kubelogin",)


def test_the_pinned_dex_is_the_pseudo_version_of_the_v2_45_1_commit() -> None:
    # Tag v2.45.1 = 11d2eeb52b42, committed 2026-03-03T14:39:05+01:00 (13:39:05 UTC).
    committed = dt.datetime(2026, 3, 3, 14, 39, 5,
                            tzinfo=dt.timezone(dt.timedelta(hours=1)))
    spec = peers.peer_spec("dex", env={})
    assert spec.module_version == peers.pseudo_version(peers.DEX_COMMIT, committed)
    assert spec.module_version == "v0.0.0-20260303133905-11d2eeb52b42"
    peers.check_pseudo_version(spec.module_version, peers.DEX_COMMIT)


def test_another_dex_release_is_an_override(tmp_path: Path, fake_go: Path) -> None:
    spec = peers.peer_spec("dex", env={"DEXKIT_DEX_MODULE_VERSION": "v0.0.0-20250101000000-"
                                       "0123456789ab", "DEXKIT_DEX_VERSION": "2.44.0"})
    assert (spec.module_version, spec.version) == ("v0.0.0-20250101000000-0123456789ab",
                                                   "2.44.0")
    assert spec.key == "dex-2.44.0"


def test_dex_without_a_module_version_says_what_to_set(
        tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(peers.DEX_BUILDS, "release", peers.DexBuild(
        version="2.45.1", commit=peers.DEX_COMMIT, module_version="", what="Dex v2.45.1"))
    spec = peers.peer_spec("dex", env={})
    with pytest.raises(DexkitError) as info:
        peers.build_peers([spec], progress=lambda _: None, root=tmp_path / "c", go=str(fake_go))
    assert "DEXKIT_DEX_MODULE_VERSION" in info.value.hint


@pytest.mark.parametrize(("goproxy", "expected"), [
    ("https://proxy.golang.org,direct", "https://proxy.golang.org"),
    ("https://a.test|https://b.test|direct", "https://a.test|https://b.test"),
    ("direct", "off"), ("off", "off"), ("", "off"),
    ("https://proxy.internal", "https://proxy.internal"),
])
def test_goproxy_never_falls_back_to_the_source_hosts(goproxy: str, expected: str) -> None:
    assert peers.proxy_without_direct(goproxy) == expected


def test_a_failed_build_names_the_command_and_shows_go_output(
        tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_GO_FAIL", "1")
    with pytest.raises(DexkitError) as info:
        peers.build_peers([peers.peer_spec("etcd")], progress=lambda _: None,
                          root=tmp_path / "c", go=str(fake_go))
    assert "'go build" in info.value.message and "exit 2" in info.value.message
    assert "compile error: something broke" in info.value.message
    assert "build.log" in info.value.hint
    etcd_dir = tmp_path / "c" / "bin" / "etcd-3.7.0"
    assert not (etcd_dir / "etcd").exists() and not (etcd_dir / peers.MANIFEST).exists()


def test_a_missing_go_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DexkitError) as info:
        peers.build_peers([peers.peer_spec("etcd")], progress=lambda _: None,
                          root=tmp_path / "c", go=str(tmp_path / "no-go-here"))
    assert "Go toolchain" in info.value.message
    assert "DEXKIT_ETCD" in info.value.hint
