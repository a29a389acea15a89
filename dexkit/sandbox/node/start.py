"""``up``: the node sandbox started by the rules of :mod:`dexkit.sandbox.node`, one function
per rule, and undone if any step fails."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dexkit import files, kube, pki
from dexkit.config import Config
from dexkit.errors import DexkitError
from dexkit.sandbox import cgroups, controlplane, images, network, peers, wiring
from dexkit.sandbox.controlplane import ControlPlane, SandboxLayout
from dexkit.sandbox.node.configs import (
    component_argv,
    containerd_config,
    first_service_ip,
    hosts_text,
    in_namespace,
    kube_proxy_config,
    kubelet_config,
    namespace_argv,
    node_apiserver_argv,
)
from dexkit.sandbox.node.namespace import exec_argv, namespace_holder, namespace_ready
from dexkit.sandbox.node.preflight import check_image, preflight
from dexkit.sandbox.node.state import (
    CGROUP,
    HOST_PATHS,
    NAMESPACE_PEER,
    NODE_NAME,
    RUN_DIR,
    SERVICE_CIDR,
    NodeBinaries,
    NodeLayout,
    NodeState,
    Progress,
    is_node,
)
from dexkit.sandbox.node.teardown import down
from dexkit.sandbox.process import ManagedProcess, start_process

# --- certificates ---------------------------------------------------------------------------


def issue_node_certs(layout: SandboxLayout, node: NodeLayout, node_ip: str,
                     now: dt.datetime) -> None:
    """Serving certificates from the sandbox CA: the API server's again (now with the node
    address), and the kubelet's, controller-manager's and scheduler's on the node address."""
    ca = pki.load_cert(layout.ca)
    ca_key = pki.load_key(layout.ca_key)
    files.ensure_dir(node.dir / "pki")
    wanted = {
        "kube-apiserver": (["localhost", "kubernetes", "kubernetes.default",
                            "kubernetes.default.svc"],
                           ["127.0.0.1", node_ip, first_service_ip()]),
        "kubelet": ([NODE_NAME], [node_ip]),
        "kube-controller-manager": ([], [node_ip]),
        "kube-scheduler": ([], [node_ip]),
    }
    for component, (hosts, ips) in wanted.items():
        key = pki.generate_key("ecdsa-p256")
        cert = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=hosts, ips=ips,
                                      days=controlplane.CERT_DAYS, now=now)
        cert_path, key_path = ((layout.serving_cert, layout.serving_key)
                               if component == "kube-apiserver" else node.cert(component))
        files.atomic_write(key_path, pki.key_pem(key), files.PRIVATE)
        files.atomic_write(cert_path, pki.cert_pem(cert), files.PUBLIC)


# --- up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRequest:
    project: Path
    config: Config
    binaries: NodeBinaries
    kubernetes_version: str
    mode: wiring.Mode | None = None
    sandbox: Path | None = None
    die_with_parent: bool = True
    network: network.NodeNetwork = field(default_factory=network.NodeNetwork)
    ready_timeout: float = 120.0


@dataclass
class Node:
    """A running node sandbox."""

    plane: ControlPlane
    layout: NodeLayout
    state: NodeState
    wired: wiring.APIServerWiring
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def namespace_pid(self) -> int:
        return namespace_holder(self.plane.state)

    def exec_argv(self, argv: Sequence[str], cwd: Path) -> list[str]:
        return exec_argv(self.plane.layout.dir, argv, cwd)

    def stop(self) -> list[str]:
        """Stop every process, then undo the rest (see :func:`teardown`)."""
        return down(self.plane.layout.dir)


def start(req: NodeRequest, progress: Progress | None = None, *,
          clock: Callable[[], float] = time.monotonic) -> Node:
    """Start the node sandbox by the module's rules; undo all of it if a step fails."""
    say = progress or (lambda _verb, _detail: None)
    net = req.network
    preflight(req.config, net)
    started = clock()
    built = images.build_node_images(lambda line: say("image", line),
                                     dex=peers.dex_build_for_image(req.config.dex.image))
    check_image(req.config, built.dex.name)
    timings = {"images": clock() - started}
    project = req.project.resolve()
    target = (req.sandbox or controlplane.sandbox_dir(project)).resolve()
    if is_node(target):
        raise DexkitError(f"{NodeLayout(target).state} records a node sandbox that was not "
                          "stopped", f"run 'dexkit sandbox down --dir {project}' first")
    wired = wiring.apiserver_wiring(req.config, project, SandboxLayout(target).files, req.mode)
    plane = controlplane.open_control_plane(target, controlplane.ControlPlaneOptions(
        extra_args=wired.args, extra_files=wired.files, kubernetes_version=req.kubernetes_version,
        die_with_parent=req.die_with_parent))
    layout = plane.layout
    node_layout = NodeLayout(layout.dir)
    shutil.rmtree(node_layout.dir, ignore_errors=True)
    node_state = NodeState(cidr=net.cidr, node_ip=net.node_ip,
                           sysctls=network.read_sysctls(),
                           absent=[p for p in HOST_PATHS if not Path(p).exists()],
                           kube_proxy=str(req.binaries.kube_proxy),
                           images={"pause": built.pause.name, "dex": built.dex.name})
    node_state.save(layout.dir)
    node = Node(plane, node_layout, node_state, wired, timings)
    try:
        _start(req, node, built, say, clock)
    except BaseException as exc:
        try:
            node.stop()
        except DexkitError as cleanup:
            raise DexkitError(f"{getattr(exc, 'message', exc)}; then undoing the start failed "
                              f"too: {cleanup.message}", cleanup.hint) from exc
        raise
    node.timings["total"] = clock() - started
    return node


def _start(req: NodeRequest, node: Node, built: images.NodeImages, say: Progress,
           clock: Callable[[], float]) -> None:
    """Rules 2 to 5 of the module, in order (rule 1, preflight, ran before anything changed)."""
    steps = _Steps(req, node, say, clock)
    _take_machine(node, req.network, say)
    _write_node_files(req, node)
    prefix = _start_namespace(steps)
    ports = _start_control_plane(steps, prefix)
    _start_runtime(steps, prefix, built)
    _start_kubelet_and_proxy(steps, prefix, ports)
    kubeconfig = node.plane.layout.kubeconfig
    steps.timed("node Ready", lambda: wait_schedulable(kubeconfig, timeout=req.ready_timeout,
                                                       clock=clock))


@dataclass
class _Steps:
    """What every start step shares: the request, the node so far, progress and the clock."""

    req: NodeRequest
    node: Node
    say: Progress
    clock: Callable[[], float]

    def timed(self, name: str, start_it: Callable[[], object]) -> None:
        began = self.clock()
        start_it()
        self.node.timings[name] = self.clock() - began
        self.say("ready", f"{name} ({self.node.timings[name]:.1f}s)")

    def launch(self, name: str, argv: Sequence[str], ready: Callable[[], bool], *,
               timeout: float, endpoint: str = "",
               on_started: Callable[[ManagedProcess], None] | None = None) -> None:
        plane = self.node.plane
        layout = plane.layout
        self.timed(name, lambda: start_process(
            name, argv, layout.log(name), ready, timeout=timeout, cwd=layout.dir,
            die_with_parent=self.req.die_with_parent, clock=self.clock,
            on_started=on_started or plane.recorder(endpoint)))


@dataclass(frozen=True)
class _Ports:
    """The node's ports, taken on the node address once etcd runs."""

    apiserver: int
    controller_manager: int
    scheduler: int
    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int


def _take_machine(node: Node, net: network.NodeNetwork, say: Progress) -> None:
    """Rule 2: the machine-wide pieces, each recorded in ``node.json`` before the next."""
    ns, sandbox = node.state, node.plane.layout.dir
    cgroups.create(CGROUP)
    ns.cgroup = CGROUP
    ns.save(sandbox)
    files.ensure_dir(RUN_DIR)
    ns.run_dir = str(RUN_DIR)
    ns.save(sandbox)
    network.create_bridge(net)
    ns.bridge = net.bridge
    ns.save(sandbox)
    say("network", f"{net.bridge} {net.node_ip}/{net.prefix} (pods: the rest of {net.cidr})")


def _write_node_files(req: NodeRequest, node: Node) -> None:
    """The node's certificates, and the hosts and resolv.conf files its processes see."""
    nl = node.layout
    files.ensure_dir(nl.dir)
    issue_node_certs(node.plane.layout, nl, req.network.node_ip, dt.datetime.now(dt.UTC))
    files.atomic_write(nl.hosts, hosts_text(req.config, Path("/etc/hosts").read_text()),
                       files.PUBLIC)
    # Pods get no name server: nothing in the sandbox resolves names, and no DNS query leaves.
    files.atomic_write(nl.resolv, "# dexkit sandbox: pods resolve nothing\n", files.PUBLIC)


@dataclass
class _NamespaceHolder:
    """The holder's PID, recorded the moment it starts: its ready check needs it."""

    plane: ControlPlane
    hosts: Path
    pid: int = 0

    def record(self, process: ManagedProcess) -> None:
        self.plane.attach(process)
        self.pid = process.pid

    def ready(self) -> bool:
        return namespace_ready(self.pid, self.hosts)()


def _start_namespace(steps: _Steps) -> list[str]:
    """Rule 3: the mount namespace's holder, the first process recorded (so stopped last);
    returns the argv prefix that runs a command in it."""
    hosts = steps.node.layout.hosts
    holder = _NamespaceHolder(steps.node.plane, hosts)
    steps.launch(NAMESPACE_PEER, namespace_argv(hosts), holder.ready, timeout=10,
                 on_started=holder.record)
    return in_namespace(holder.pid)


def _start_control_plane(steps: _Steps, prefix: Sequence[str]) -> _Ports:
    """Rule 4: etcd, level 1's API server with the node's differences (in the namespace),
    the admin kubeconfig, then kube-controller-manager and kube-scheduler."""
    req, plane, nl = steps.req, steps.node.plane, steps.node.layout
    layout, node_ip = plane.layout, req.network.node_ip
    steps.timed("etcd", lambda: plane.start_etcd(req.binaries.etcd, clock=steps.clock))
    etcd_url = plane.etcd_url

    ports = _Ports(*controlplane.free_ports(8, host=node_ip)[:7])
    api_url = f"https://{node_ip}:{ports.apiserver}"
    argv = node_apiserver_argv(
        controlplane.apiserver_argv(req.binaries.kube_apiserver, layout, etcd_url,
                                    ports.apiserver, steps.node.wired.args), layout, node_ip)
    steps.launch("kube-apiserver", [*prefix, *argv],
                 controlplane.url_ready(f"{api_url}/readyz", context=plane.admin_context(),
                                        body_contains="ok"),
                 timeout=120, endpoint=api_url)
    controlplane.write_admin_kubeconfig(layout, api_url)
    kubeconfig = layout.kubeconfig
    ca_context = controlplane.tls_context(layout.ca)

    kcm = component_argv(req.binaries.kube_controller_manager, kubeconfig,
                         nl.cert("kube-controller-manager"), node_ip, ports.controller_manager)
    kcm += [f"--service-account-private-key-file={layout.sa_key}",
            f"--root-ca-file={layout.ca}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-csrsigning,-csrapproving,-csrcleaner"]
    _launch_component(steps, "kube-controller-manager", kcm, ports.controller_manager,
                      ca_context)
    sched = component_argv(req.binaries.kube_scheduler, kubeconfig, nl.cert("kube-scheduler"),
                           node_ip, ports.scheduler)
    _launch_component(steps, "kube-scheduler", sched, ports.scheduler, ca_context)
    return ports


def _launch_component(steps: _Steps, name: str, argv: Sequence[str], port: int,
                      ca_context: ssl.SSLContext) -> None:
    """kube-controller-manager or kube-scheduler, ready when its /healthz says ok."""
    url = f"https://{steps.req.network.node_ip}:{port}"
    steps.launch(name, argv,
                 controlplane.url_ready(f"{url}/healthz", context=ca_context,
                                        body_contains="ok"),
                 timeout=60, endpoint=url)


def _start_runtime(steps: _Steps, prefix: Sequence[str], built: images.NodeImages) -> None:
    """The bridge CNI network's config, containerd (in the namespace, its shims and
    containers in the node's cgroup) and the locally built images imported into it."""
    nl, net = steps.node.layout, steps.req.network
    files.ensure_dir(nl.cni_conf)
    files.ensure_dir(nl.cni_ipam)
    files.atomic_write(nl.cni_conf / "10-dexkit.conflist",
                       network.cni_conflist(net, SERVICE_CIDR, nl.cni_ipam), files.PUBLIC)
    files.ensure_dir(nl.containerd)
    files.atomic_write(nl.config("containerd"), containerd_config(nl, built.pause.name),
                       files.PRIVATE)
    steps.launch("containerd",
                 [*prefix, "containerd", "--config", str(nl.config("containerd"))],
                 _containerd_ready(nl.containerd_socket), timeout=30,
                 on_started=partial(_record_and_join, steps.node.plane, nl.containerd_socket))
    steps.timed("image import", lambda: import_images(nl.containerd_socket, built))


def _record_and_join(plane: ControlPlane, sock: Path, process: ManagedProcess) -> None:
    """containerd's ``on_started``: recorded, then moved into the node's cgroup (its shims and
    containers follow it there)."""
    plane.attach(process, f"unix://{sock}")
    cgroups.join(CGROUP, process.pid)


def _start_kubelet_and_proxy(steps: _Steps, prefix: Sequence[str], ports: _Ports) -> None:
    """The kubelet (in the namespace: its Secret volumes' mounts vanish with it), then
    kube-proxy."""
    req, nl, net = steps.req, steps.node.layout, steps.req.network
    layout = steps.node.plane.layout
    kubeconfig = layout.kubeconfig
    files.atomic_write(nl.config("kubelet"), kubelet_config(layout, nl, net.node_ip,
                                                            ports.kubelet, ports.kubelet_healthz),
                       files.PRIVATE)
    kubelet = [*prefix, str(req.binaries.kubelet), f"--config={nl.config('kubelet')}",
               f"--kubeconfig={kubeconfig}", f"--root-dir={nl.kubelet_root}",
               f"--hostname-override={NODE_NAME}", f"--node-ip={net.node_ip}", "--v=1"]
    steps.launch("kubelet", kubelet,
                 controlplane.url_ready(f"http://127.0.0.1:{ports.kubelet_healthz}/healthz",
                                        body_contains="ok"),
                 timeout=60, endpoint=f"https://{net.node_ip}:{ports.kubelet}")
    files.atomic_write(nl.config("kube-proxy"),
                       kube_proxy_config(kubeconfig, net, ports.proxy_healthz,
                                         ports.proxy_metrics),
                       files.PRIVATE)
    steps.launch("kube-proxy",
                 [str(req.binaries.kube_proxy), f"--config={nl.config('kube-proxy')}"],
                 controlplane.url_ready(f"http://{net.node_ip}:{ports.proxy_healthz}/healthz"),
                 timeout=60)


def _containerd_ready(sock: Path) -> Callable[[], bool]:
    def check() -> bool:
        if not sock.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(1)
            client.connect(str(sock))
        return True
    return check


def import_images(sock: Path, built: images.NodeImages) -> None:
    for archive in (built.pause, built.dex):
        import_image(sock, archive)


def import_image(sock: Path, archive: images.ImageArchive) -> None:
    """``ctr images import`` into the CRI's namespace, unpacked for its snapshotter."""
    result = subprocess.run(
        ["ctr", f"--address={sock}", "--namespace=k8s.io", "images", "import",
         "--snapshotter=overlayfs", str(archive.path)],
        capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise DexkitError(f"containerd refused the image {archive.name} ({archive.path}): "
                          f"{result.stderr.strip()}",
                          "remove the archive from the cache so it is built again")


def wait_schedulable(kubeconfig: Path, *, timeout: float,
                     clock: Callable[[], float] = time.monotonic) -> None:
    """Until the Node is Ready and untainted, and pods can get their token volume."""
    admin = kube.connect(kube.Target(kubeconfig))
    deadline = clock() + timeout
    last = "the Node has not registered"
    while True:
        node = kube.get_object(admin, kube.ObjectRef("Node", NODE_NAME))
        if node is not None:
            last = _unschedulable(node)
            if not last:
                if kube.get_object(admin, kube.ObjectRef("ServiceAccount", "default",
                                                         "default")) is None:
                    last = "the default ServiceAccount is not created yet"
                elif kube.get_object(admin, kube.ObjectRef("ConfigMap", "kube-root-ca.crt",
                                                           "default")) is None:
                    last = "kube-root-ca.crt is not published yet"
                else:
                    return
        if clock() >= deadline:
            raise DexkitError(f"the node was not ready after {timeout:.0f}s: {last}",
                              "read the kubelet's and containerd's logs in the sandbox's "
                              "logs/ directory")
        time.sleep(0.5)


def _unschedulable(node: Mapping[str, Any]) -> str:
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    if ready.get("status") != "True":
        return f"Ready is {ready.get('status', 'unknown')}: {ready.get('message', '')}".strip()
    taints = [t for t in (node.get("spec") or {}).get("taints") or []
              if t.get("effect") in ("NoSchedule", "NoExecute")]
    if taints:
        return "tainted " + ", ".join(f"{t.get('key')}:{t.get('effect')}" for t in taints)
    return ""



def describe(node: Node) -> dict[str, str]:
    """The fields ``sandbox up --node`` prints."""
    plane = node.plane
    return {"API server": plane.state.endpoints.get("kube-apiserver", ""),
            "node": f"{NODE_NAME} at {node.state.node_ip} ({node.state.bridge})",
            "Dex image": node.state.images.get("dex", ""),
            "kubeconfig": str(plane.kubeconfig), "logs": str(plane.layout.logs),
            "hosts": str(node.layout.hosts)}
