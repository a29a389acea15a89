"""dexkit.ready's rules with fakes of the cluster, the handshake and the clock; the real node
proves them in tests/e2e/test_node.py (rotate, deploy, verify at once, cycles of it)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from dexkit import kube, ready
from dexkit.errors import ClusterError
from tests.unit.doctor.helpers import ca_and_leaf
from tests.unit.render.helpers import make_config

CONFIG = make_config()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.PEM))


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.DER))


@pytest.fixture
def tls() -> tuple[bytes, bytes, bytes, bytes]:
    """(ca pem, cert pem, this cert's DER, another cert's DER)."""
    ca, _, leaf, _ = ca_and_leaf(["dex.example.com"])
    _, _, other, _ = ca_and_leaf(["dex.example.com"])
    return _pem(ca), _pem(leaf), _der(leaf), _der(other)


def _target(tls: tuple[bytes, bytes, bytes, bytes], log: Path | None = None) -> ready.Target:
    return ready.Target(CONFIG, kube.Target(), tls[1], tls[0], apiserver_log=log)


def _deployment(revision: str = "2") -> dict[str, Any]:
    return {"metadata": {"annotations": {"deployment.kubernetes.io/revision": revision}}}


def _rs(hash_: str, revision: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"pod-template-hash": hash_},
                         "annotations": {"deployment.kubernetes.io/revision": revision}}}


def _slice(*pods: tuple[str, bool]) -> dict[str, Any]:
    return {"endpoints": [{"conditions": {"ready": up}, "targetRef": {"kind": "Pod", "name": n}}
                          for n, up in pods]}


def _pod(name: str, hash_: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"pod-template-hash": hash_}}}


class FakeCluster:
    """kube.get_object/list_objects/pod_log over a dict of what the API server holds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.logs = ""
        self.probes = 0
        monkeypatch.setattr(kube, "get_object", lambda c, ref: (
            _deployment() if ref.kind == "Deployment" else None))
        monkeypatch.setattr(kube, "list_objects", lambda c, kind, **kw: list(
            self.objects.get(kind, [])))
        monkeypatch.setattr(kube, "pod_log", lambda *a, **kw: self.logs)
        monkeypatch.setattr(kube, "connect", lambda *a, **kw: object())

        def who_am_i(_: object) -> None:
            self.probes += 1
            raise ClusterError("401 Unauthorized", "")
        monkeypatch.setattr(kube, "who_am_i", who_am_i)


def test_the_current_replica_set_is_the_deployments_revision() -> None:
    sets = [_rs("old", "1"), _rs("new", "2")]
    assert ready.current_hash(sets, _deployment("2")) == "new"
    assert ready.current_hash(sets, _deployment("3")) == ""


def test_ready_pods_skip_endpoints_that_are_not_ready() -> None:
    assert ready.ready_pods([_slice(("a", True), ("b", False)), _slice(("c", True))]) == \
        ["a", "c"]


def test_endpoints_wait_until_only_the_new_pods_are_behind_the_service(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(monkeypatch)
    fake.objects = {"ReplicaSet": [_rs("old", "1"), _rs("new", "2")],
                    "Pod": [_pod("dex-old", "old"), _pod("dex-new", "new")],
                    "EndpointSlice": [_slice(("dex-old", True), ("dex-new", True))]}
    done, detail = ready._endpoints(kube.Cluster("s", "c", None), CONFIG)
    assert not done and "still sends to old Pods: dex-old" in detail
    fake.objects["EndpointSlice"] = [_slice(("dex-old", False), ("dex-new", True))]
    assert ready._endpoints(kube.Cluster("s", "c", None), CONFIG)[0]
    fake.objects["EndpointSlice"] = []
    done, detail = ready._endpoints(kube.Cluster("s", "c", None), CONFIG)
    assert not done and "no ready endpoint" in detail


def _handshakes(answers: dict[str, list[object]]) -> Any:
    def handshake(address: str, port: int, name: str, context: ssl.SSLContext) -> bytes:
        answer = answers[address].pop(0) if len(answers[address]) > 1 else answers[address][0]
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, bytes) and port == 32000 and name == "dex.example.com"
        return answer
    return handshake


def _node(fake: FakeCluster, address: str) -> None:
    fake.objects["Node"] = [{"status": {"addresses": [{"type": "InternalIP",
                                                       "address": address}]}}]


def test_a_refusing_node_is_waited_for_and_an_old_certificate_is_not_taken(
        monkeypatch: pytest.MonkeyPatch, tls: tuple[bytes, bytes, bytes, bytes]) -> None:
    fake = FakeCluster(monkeypatch)
    _node(fake, "10.0.0.5")
    cluster = kube.Cluster("s", "c", None)
    clock = Clock()
    edges = ready.Edges(clock=clock, sleep=clock.sleep,
                        handshake=_handshakes({"10.0.0.5": [ConnectionRefusedError(111, "x")],
                                               "127.0.0.1": [ConnectionRefusedError(111, "x")]}))
    streak = ready.Streak()
    reachable, why = ready._nodeport(cluster, _target(tls), edges, streak)
    assert reachable and why.startswith("10.0.0.5:32000")
    edges.handshake = _handshakes({"10.0.0.5": [tls[2], tls[3]]})
    reachable, why = ready._nodeport(cluster, _target(tls), edges, streak)
    assert reachable and "another certificate" in why and streak.good == 0
    edges.handshake = _handshakes({"10.0.0.5": [tls[2]]})
    # Good handshakes: not enough until HANDSHAKES of them span SETTLE seconds.
    polls = []
    while (answer := ready._nodeport(cluster, _target(tls), edges, streak)) != (True, "ok"):
        polls.append(answer)
        clock.sleep(ready.POLL)
    assert streak.good >= ready.HANDSHAKES and clock.now >= ready.SETTLE
    assert {why for _, why in polls} == {
        "10.0.0.5:32000 presents ssl/cert.pem; 10 handshakes in a row over 2 s show that "
        "kube-proxy has caught up"}


def _serving(monkeypatch: pytest.MonkeyPatch, answers: list[object],
             tls: tuple[bytes, bytes, bytes, bytes]) -> tuple[list[tuple[str, str]], list[str],
                                                           list[object]]:
    """wait_until_serving with the endpoints ready, the node 10.0.0.5 answering ``answers``
    in turn (then its last one for ever), and this machine's loopback refusing: the steps
    said, the API server proxy's requests, and the handshakes left."""
    fake = FakeCluster(monkeypatch)
    fake.objects = {"ReplicaSet": [_rs("new", "2")], "Pod": [_pod("dex-new", "new")],
                    "EndpointSlice": [_slice(("dex-new", True))]}
    _node(fake, "10.0.0.5")
    asked: list[str] = []

    def proxy(cluster: object, namespace: str, service: str, path: str) -> str:
        asked.append(path)
        return '{"issuer": "https://dex.example.com:32000"}'
    monkeypatch.setattr(kube, "service_proxy_get", proxy)
    clock = Clock()
    steps: list[tuple[str, str]] = []
    left = list(answers)
    edges = ready.Edges(clock=clock, sleep=clock.sleep, handshake=_handshakes(
        {"10.0.0.5": left, "127.0.0.1": [ConnectionRefusedError(111, "x")]}))
    ready.wait_until_serving(kube.Cluster("s", "c", None), _target(tls), timeout=60,
                             on_step=lambda step, detail: steps.append((step, detail)),
                             edges=edges)
    return steps, asked, left


def test_a_connection_that_goes_nowhere_after_good_ones_is_waited_for(
        monkeypatch: pytest.MonkeyPatch, tls: tuple[bytes, bytes, bytes, bytes]) -> None:
    # Seen on the node: 'verify' right after 'deploy --wait' timed out on the NodePort.
    # kube-proxy still sent some connections to the old Pod's dead address; the handshakes
    # that time out there are not a node out of reach (whose proof the API server's proxy,
    # which bypasses kube-proxy, would give).
    answers: list[object] = [tls[2], tls[2], TimeoutError("timed out"), tls[2]]
    steps, asked, left = _serving(monkeypatch, answers, tls)
    assert asked == []
    tls_steps = [detail for step, detail in steps if step == "tls"]
    assert tls_steps[0] == "waiting: 10.0.0.5:32000: timed out (kube-proxy may still send " \
                           "connections to a Pod that is gone)"
    assert tls_steps[-1] == "the NodePort 32000 presents ssl/cert.pem (10+ handshakes in a " \
                            "row over 2 s)"
    assert left == [tls[2]]


def test_a_node_that_never_answers_leaves_the_proof_to_the_proxy(
        monkeypatch: pytest.MonkeyPatch, tls: tuple[bytes, bytes, bytes, bytes]) -> None:
    steps, asked, _ = _serving(monkeypatch, [TimeoutError("timed out")], tls)
    assert asked == ["/.well-known/openid-configuration"]
    assert [detail for step, detail in steps if step == "tls"] == [
        "the Service serves the issuer's discovery (through the API server's proxy)"]


def test_unreachable_nodes_leave_the_proof_to_the_api_servers_proxy(
        monkeypatch: pytest.MonkeyPatch, tls: tuple[bytes, bytes, bytes, bytes]) -> None:
    fake = FakeCluster(monkeypatch)
    fake.objects["Node"] = [{"status": {"addresses": [{"type": "InternalIP",
                                                       "address": "10.9.9.9"}]}}]
    asked: list[str] = []

    def proxy(cluster: object, namespace: str, service: str, path: str) -> str:
        asked.append(f"{namespace}/{service}{path}")
        return '{"issuer": "https://dex.example.com:32000", "jwks_uri": "..."}'
    monkeypatch.setattr(kube, "service_proxy_get", proxy)
    edges = ready.Edges(handshake=_handshakes({"10.9.9.9": [TimeoutError("timed out")],
                                              "127.0.0.1": [ConnectionRefusedError(111, "x")]}))
    done, detail = ready._through_service(kube.Cluster("s", "c", None), _target(tls), edges)
    assert done and "through the API server's proxy" in detail
    assert asked == ["dex/https:dex:https/.well-known/openid-configuration"]


def test_the_api_server_is_waited_for_until_its_authenticator_is_initialized(
        monkeypatch: pytest.MonkeyPatch, tls: tuple[bytes, bytes, bytes, bytes],
        tmp_path: Path) -> None:
    fake = FakeCluster(monkeypatch)
    log = tmp_path / "kube-apiserver.log"
    log.write_text('E1205 authentication.go:75] "Unable to authenticate the request" '
                   'err="[invalid bearer token, oidc: authenticator not initialized]"\n')
    clock = Clock()
    edges = ready.Edges(clock=clock, sleep=clock.sleep)
    target = _target(tls, log)
    done, detail = ready._authenticator(kube.Cluster("s", "c", None), target,
                                        lambda: log.read_text(), edges)
    assert not done and "authenticator not initialized" in detail and fake.probes == 1
    with log.open("a") as handle:
        handle.write('E1205 authentication.go:75] "Unable to authenticate the request" '
                     'err="[invalid bearer token, oidc: verify token: failed to verify '
                     'signature]"\n')
    done, detail = ready._authenticator(kube.Cluster("s", "c", None), target,
                                        lambda: log.read_text(), edges)
    assert done and "initialized" in detail


def test_a_step_that_never_holds_fails_by_name_within_the_timeout(
        monkeypatch: pytest.MonkeyPatch, tls: tuple[bytes, bytes, bytes, bytes]) -> None:
    fake = FakeCluster(monkeypatch)
    fake.objects = {"ReplicaSet": [_rs("new", "2")], "EndpointSlice": []}
    clock = Clock()
    steps: list[tuple[str, str]] = []
    with pytest.raises(ready.NotServing) as info:
        ready.wait_until_serving(kube.Cluster("s", "c", None), _target(tls), timeout=5,
                                 on_step=lambda s, d: steps.append((s, d)),
                                 edges=ready.Edges(clock=clock, sleep=clock.sleep))
    assert info.value.message.startswith("Dex is rolled out but does not serve logins yet "
                                         "(endpoints): Service dex/dex has no ready endpoint")
    assert "endpointslices" in info.value.hint
    assert steps == [("endpoints", "waiting: Service dex/dex has no ready endpoint")]
    assert clock.now >= 5
