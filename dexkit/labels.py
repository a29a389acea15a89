"""The labels dexkit puts on what it deploys, and reads back to find it: one vocabulary.

- :data:`LABELS` (``app.kubernetes.io/name: dex``, ``app.kubernetes.io/managed-by: dexkit``)
  on every rendered object; :data:`SELECTOR` picks Dex's pods. dexkit.yaml's ``commonLabels``
  may not set either key (:data:`OWNED_LABELS`).
- ``app.kubernetes.io/instance: <namespace>``, added by deploy to every object but the shared
  ClusterRole, so that destroy finds this installation's cluster-scoped objects.
- ``app.kubernetes.io/component: credentials`` on the Secrets deploy makes from credentials:
  destroy keeps them unless ``--purge``.

Imports nothing: the pure core (config, render) and the use cases (deploy, destroy) share it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
APP = "dex"
MANAGER = "dexkit"
CREDENTIALS_COMPONENT = "credentials"

LABELS: Mapping[str, str] = {
    NAME_LABEL: APP,
    MANAGED_BY_LABEL: MANAGER,
}
SELECTOR: Mapping[str, str] = {NAME_LABEL: APP}
OWNED_LABELS = (NAME_LABEL, MANAGED_BY_LABEL)
# The label selector that lists what dexkit made.
MANAGED = f"{MANAGED_BY_LABEL}={MANAGER}"
