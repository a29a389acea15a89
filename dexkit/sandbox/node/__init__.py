"""The node sandbox (level 2): a real one-node cluster on this machine, without Docker.

The level-1 control plane (etcd, and kube-apiserver configured by dexkit's rendered OIDC side)
plus kube-controller-manager, kube-scheduler, containerd, the kubelet and kube-proxy, with a
bridge CNI network and locally built images (:mod:`dexkit.sandbox.images`). Dex is not started
here: ``dexkit deploy`` runs it as the rendered Deployment.

Rules, in the order ``up`` acts:

1. Preflight, before anything changes: root; the commands the node runs (Debian's containerd,
   runc, CNI plugins, iptables); the machine-wide things a node takes are free (the bridge and
   its /24, ``KUBE-`` chains, the cgroup tree, :data:`RUN_DIR`, the project's NodePort).
2. ``node.json`` records what ``down`` must put back (kernel settings, host directories that did
   not exist) before it is changed, and is rewritten after each step, so ``down`` from any
   process undoes whatever ``up`` got to, even after a crash half-way.
3. A private mount namespace (:func:`start_namespace`) holds the processes that need the
   sandbox's ``/etc/hosts`` (the issuer's host -> 127.0.0.1, where the NodePort answers) or
   whose mounts must vanish with them: kube-apiserver, containerd (image layers, pod network
   namespaces) and the kubelet (Secret volumes). Its holder is the first process recorded, so
   it is stopped last; once no process is left in it, every mount it had is gone, however the
   processes ended. ``dexkit sandbox exec`` runs a command in it.
4. The API server is level 1's, with the node's differences only: it listens and advertises on
   the node address (the ``kubernetes`` Endpoints refuse loopback), the ServiceAccount
   admission plugin is on (pods get their tokens) and it reaches the kubelet with the admin
   client certificate. Every component authenticates with the sandbox's admin certificate
   (``system:masters``): one identity, because the sandbox proves Dex, not node authorization.
5. Ready means a pod can be scheduled: the Node is ``Ready`` without ``NoSchedule`` taints, the
   ``default`` ServiceAccount exists and ``kube-root-ca.crt`` is published (a pod's token
   volume needs both).

``down`` (:func:`teardown`, after the processes are stopped) kills what is left in the cgroup
tree (shims, containers), runs ``kube-proxy --cleanup`` and deletes every ``KUBE-`` chain,
deletes the bridge, writes back the kernel settings, removes the host directories it created,
and then checks that nothing is left (:func:`leftovers`).

The package, by concern: :mod:`.state` (fixed names, the node's files, ``node.json``),
:mod:`.configs` (pure: configs and argv as text), :mod:`.preflight` (rule 1), :mod:`.namespace`
(rule 3's holder, and ``exec``), :mod:`.start` (``up``, one function per rule above) and
:mod:`.teardown` (``down``). Every name is re-exported here.
"""

from __future__ import annotations

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
from dexkit.sandbox.node.namespace import exec_argv, exec_command, namespace_holder
from dexkit.sandbox.node.preflight import check_image, preflight
from dexkit.sandbox.node.start import (
    Node,
    NodeRequest,
    describe,
    import_image,
    import_images,
    issue_node_certs,
    start,
    wait_schedulable,
)
from dexkit.sandbox.node.state import (
    CGROUP,
    CNI_BIN,
    CNI_PLUGINS,
    HOST_PATHS,
    KIND_ENGINE_RUN_DIR,
    NAMESPACE_PEER,
    NODE_NAME,
    PACKAGES_HINT,
    REQUIRED_COMMANDS,
    RUN_DIR,
    SERVICE_CIDR,
    STATE_FILE,
    NodeBinaries,
    NodeLayout,
    NodeState,
    Progress,
    is_node,
)
from dexkit.sandbox.node.teardown import (
    down,
    leftovers,
    own_entries,
    remove_own_entries,
    teardown,
)

__all__ = [
    "CGROUP",
    "CNI_BIN",
    "CNI_PLUGINS",
    "HOST_PATHS",
    "KIND_ENGINE_RUN_DIR",
    "NAMESPACE_PEER",
    "NODE_NAME",
    "PACKAGES_HINT",
    "REQUIRED_COMMANDS",
    "RUN_DIR",
    "SERVICE_CIDR",
    "STATE_FILE",
    "Node",
    "NodeBinaries",
    "NodeLayout",
    "NodeRequest",
    "NodeState",
    "Progress",
    "check_image",
    "component_argv",
    "containerd_config",
    "describe",
    "down",
    "exec_argv",
    "exec_command",
    "first_service_ip",
    "hosts_text",
    "import_image",
    "import_images",
    "in_namespace",
    "is_node",
    "issue_node_certs",
    "kube_proxy_config",
    "kubelet_config",
    "leftovers",
    "namespace_argv",
    "namespace_holder",
    "node_apiserver_argv",
    "own_entries",
    "preflight",
    "remove_own_entries",
    "start",
    "teardown",
    "wait_schedulable",
]
