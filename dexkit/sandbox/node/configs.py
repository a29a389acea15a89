"""The node's configuration as text and argv, from values only: the hosts file, the mount
namespace's argv, containerd's, the kubelet's and kube-proxy's configs, and the API server's,
controller-manager's and scheduler's argv. Nothing here starts, reads or writes anything."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from dexkit.config import Config, is_ip
from dexkit.sandbox import network, wiring
from dexkit.sandbox.node.state import CGROUP, CNI_BIN, NODE_NAME, SERVICE_CIDR, NodeLayout

if TYPE_CHECKING:
    from dexkit.sandbox.controlplane import SandboxLayout


def hosts_text(config: Config, base: str) -> str:
    """The machine's hosts file plus the issuer's host on 127.0.0.1 (where the NodePort is)."""
    host = config.issuer_host
    text = base if base.endswith("\n") or not base else base + "\n"
    if wiring.issuer_is_local(config) or is_ip(host):
        return text
    return text + (f"# dexkit sandbox: the issuer's host, served by the node's NodePort on "
                   f"127.0.0.1\n127.0.0.1\t{host}\n")


def namespace_argv(hosts: Path) -> list[str]:
    """The holder: a private mount namespace with ``hosts`` bound over ``/etc/hosts``."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec sleep infinity', str(hosts)]


def in_namespace(pid: int) -> list[str]:
    """An argv prefix that runs a command in the holder's mount namespace (nsenter execs it,
    so the PID is the command's own)."""
    return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--"]



def first_service_ip() -> str:
    return str(ipaddress.IPv4Network(SERVICE_CIDR).network_address + 1)


def containerd_config(node: NodeLayout, pause_image: str) -> str:
    root, state = node.containerd / "root", node.containerd / "state"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# Written by dexkit sandbox: the node's containerd, all of its state in this sandbox.
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[{cri}]
  sandbox_image = "{pause_image}"
  # Pod network namespaces are bind-mounted here, inside the sandbox's mount namespace.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # The kubelet gives pod sandboxes oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE,
  # which a container or VM running the sandbox may lack (this one does): keep it no lower
  # than containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{state / 'runc'}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{node.cni_conf}"
  [{cri}.registry]
    config_path = ""
"""


def kubelet_config(layout: SandboxLayout, node: NodeLayout, node_ip: str, port: int,
                   healthz_port: int) -> str:
    cert, key = node.cert("kubelet")
    data = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(layout.ca)}},
        "authorization": {"mode": "Webhook"},
        # No systemd here; and on cgroup v1 the kubelet must be told to start (the default
        # flips to refusing in later releases).
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "imageServiceEndpoint": f"unix://{node.containerd_socket}",
        "podLogsDir": str(node.pod_logs),
        # No cluster DNS runs and nothing in the sandbox resolves names: pods ask their own
        # loopback, so a lookup fails at once and no query leaves the pod (and ClusterFirst
        # pods get no MissingClusterDNS warning to read past in a diagnosis).
        "resolvConf": str(node.resolv),
        "clusterDNS": ["127.0.0.1"],
        "clusterDomain": "cluster.local",
        "registerNode": True,
        "maxPods": 16,
        "serializeImagePulls": False,
        # The images were imported by hand and no registry is reachable: never collect them,
        # and never evict for a busy CI disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "0s",
        "staticPodPath": "",
    }
    return "# Written by dexkit sandbox.\n" + yaml.safe_dump(data, sort_keys=False)


def kube_proxy_config(kubeconfig: Path, net: network.NodeNetwork, healthz: int,
                      metrics: int) -> str:
    data = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": net.cidr,
        # NodePorts on loopback (the guide's https://127.0.0.1:32000) and the node address
        # only, never on the machine's other interfaces.
        "nodePortAddresses": ["127.0.0.1/32", f"{net.node_ip}/32"],
        "healthzBindAddress": f"{net.node_ip}:{healthz}",
        "metricsBindAddress": f"{net.node_ip}:{metrics}",
        "iptables": {"localhostNodePorts": True, "masqueradeAll": False,
                     "syncPeriod": "30s", "minSyncPeriod": "0s"},
        # Leave the machine's conntrack settings as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }
    return "# Written by dexkit sandbox.\n" + yaml.safe_dump(data, sort_keys=False)


def node_apiserver_argv(argv: Sequence[str], layout: SandboxLayout, node_ip: str) -> list[str]:
    """Level 1's API-server argv with the node's differences (module rule 4)."""
    replace = {"--bind-address": node_ip, "--advertise-address": node_ip}
    out: list[str] = []
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag == "--disable-admission-plugins":
            continue  # ServiceAccount admission: pods get their token volume
        if flag == "--endpoint-reconciler-type":
            continue  # pods reach the API server through the `kubernetes` Service's endpoints
        out.append(f"{flag}={replace[flag]}" if flag in replace else arg)
    out += [f"--kubelet-client-certificate={layout.admin_cert}",
            f"--kubelet-client-key={layout.admin_key}",
            "--kubelet-preferred-address-types=InternalIP"]
    return out


def component_argv(binary: Path, kubeconfig: Path, cert: tuple[Path, Path], node_ip: str,
                   port: int) -> list[str]:
    """What kube-controller-manager and kube-scheduler share."""
    return [str(binary), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", f"--bind-address={node_ip}",
            f"--secure-port={port}", f"--tls-cert-file={cert[0]}",
            f"--tls-private-key-file={cert[1]}", "--leader-elect=false", "--profiling=false"]

