"""``dexkit destroy``: remove what ``dexkit deploy`` made, found by its labels.

Rules:

- Namespaced objects labelled ``app.kubernetes.io/managed-by: dexkit`` in the project's
  namespace are deleted, dependents first (Ingress, Service, Deployment, … ServiceAccount).
- The TLS and connector Secrets (``app.kubernetes.io/component: credentials``) are kept unless
  ``purge``: they hold what cannot be rendered again. So is the namespace, which would take them
  with it; ``purge`` deletes it too when deploy made it (never a built-in namespace).
- Cluster-scoped bindings are deleted when they carry this installation's
  ``app.kubernetes.io/instance`` label; a ClusterRole dexkit made only once no binding refers to
  it any more, since installations in other namespaces share it.
- Dex's CRDs (group ``dex.coreos.com``; Dex creates them itself) and with them every stored
  refresh token, key and password are deleted only with ``purge_crds``.
- Objects nobody labelled are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dexkit import kube
from dexkit.config import Config
from dexkit.deploy import namespace_ref
from dexkit.labels import (
    COMPONENT_LABEL,
    CREDENTIALS_COMPONENT,
    INSTANCE_LABEL,
    MANAGED,
    MANAGER,
)
from dexkit.labels import MANAGED_BY_LABEL as MANAGED_BY
from dexkit.render.dex import BUILTIN_NAMESPACES, CRD_GROUP

# Reverse apply order: what refers to something goes before it.
NAMESPACED_KINDS = ("Ingress", "PodDisruptionBudget", "Service", "Deployment", "ConfigMap",
                    "Secret", "RoleBinding", "Role", "ServiceAccount")


@dataclass(frozen=True)
class Removal:
    ref: kube.ObjectRef
    action: str  # deleted | kept | gone
    note: str = ""


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _is_credentials(obj: Mapping[str, Any]) -> bool:
    return _labels(obj).get(COMPONENT_LABEL) == CREDENTIALS_COMPONENT


def _delete(cluster: kube.Cluster, ref: kube.ObjectRef, note: str = "") -> Removal:
    return Removal(ref, "deleted" if kube.delete_object(cluster, ref) else "gone", note)


def destroy(cluster: kube.Cluster, config: Config, *, purge: bool = False,
            purge_crds: bool = False) -> list[Removal]:
    """Delete by the module's rules; one Removal per object looked at."""
    namespace = config.namespace
    removals: list[Removal] = []
    live_namespace = kube.get_object(cluster, namespace_ref(config))
    if live_namespace is not None:
        for kind in NAMESPACED_KINDS:
            for obj in kube.list_objects(cluster, kind, namespace=namespace, labels=MANAGED):
                ref = kube.ObjectRef.of(obj)
                if _is_credentials(obj) and not purge:
                    removals.append(Removal(ref, "kept", "credentials; --purge deletes them"))
                else:
                    removals.append(_delete(cluster, ref))
    removals += _cluster_scoped(cluster, namespace)
    if purge and live_namespace is not None:
        removals.append(_namespace(cluster, config, live_namespace))
    if purge_crds:
        removals += _crds(cluster)
    return removals


def _cluster_scoped(cluster: kube.Cluster, namespace: str) -> list[Removal]:
    removals = [_delete(cluster, kube.ObjectRef.of(binding)) for binding in kube.list_objects(
        cluster, "ClusterRoleBinding", labels=f"{MANAGED},{INSTANCE_LABEL}={namespace}")]
    bound: dict[str, list[str]] = {}
    for binding in kube.list_objects(cluster, "ClusterRoleBinding"):
        role_name = str((binding.get("roleRef") or {}).get("name"))
        bound.setdefault(role_name, []).append(str(binding["metadata"]["name"]))
    for role in kube.list_objects(cluster, "ClusterRole", labels=MANAGED):
        ref = kube.ObjectRef.of(role)
        if ref.name in bound:
            removals.append(Removal(ref, "kept", f"still bound by {', '.join(bound[ref.name])}"))
        else:
            removals.append(_delete(cluster, ref))
    return removals


def _namespace(cluster: kube.Cluster, config: Config, live: Mapping[str, Any]) -> Removal:
    ref = namespace_ref(config)
    made_by_us = _labels(live).get(MANAGED_BY) == MANAGER
    if config.namespace in BUILTIN_NAMESPACES or not made_by_us:
        return Removal(ref, "kept", "dexkit did not create it")
    return _delete(cluster, ref, "with everything left in it")


def _crds(cluster: kube.Cluster) -> list[Removal]:
    found = kube.list_objects(cluster, "CustomResourceDefinition")
    return [_delete(cluster, kube.ObjectRef.of(crd), "with every object of it")
            for crd in found if (crd.get("spec") or {}).get("group") == CRD_GROUP]
