"""The sandbox: real etcd, kube-apiserver, kubectl and Dex as local processes.

- :mod:`dexkit.sandbox.peers` builds the peers from their Go modules and finds them again.
- :mod:`dexkit.sandbox.controlplane` starts etcd and kube-apiserver (and Dex) under one
  directory, writes the admin kubeconfig, and records what runs so that ``down`` can stop it.
- :mod:`dexkit.sandbox.process` starts, waits for and stops one peer process.

This package is the only part of dexkit that starts processes.
"""
