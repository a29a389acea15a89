#!/bin/sh
# Make login.example.org resolve to Dex on the CI host, rendered by dexkit. Run it before or after
# 'kind create cluster --config cluster.yaml'; it is safe to run twice. It touches only this
# machine's /etc/hosts, so it works with any of kind's providers (docker, podman, nerdctl).
# Inside the node the API server needs no entry: kubeadm gives its Pod the name itself
# (kubeadm-patches/kube-apiserver+strategic.yaml).
set -eu
host=login.example.org

# The port mapping listens on 127.0.0.1:443 and forwards to the Dex NodePort.
if ! grep -q "[[:space:]]$host\$" /etc/hosts; then
  if [ -w /etc/hosts ]; then
    echo "127.0.0.1 $host" >> /etc/hosts
  else
    echo "127.0.0.1 $host" | sudo tee -a /etc/hosts > /dev/null
  fi
fi
