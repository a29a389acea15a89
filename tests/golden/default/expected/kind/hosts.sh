#!/bin/sh
# Make dex.example.com resolve to Dex from the CI host and from inside the kind node, rendered by
# dexkit. Run it after 'kind create cluster --config cluster.yaml'; it is safe to run twice.
#   usage: sh hosts.sh [NODE]    (NODE defaults to kind-control-plane)
set -eu
node="${1:-kind-control-plane}"
host=dex.example.com

# CI host: the port mapping listens on 127.0.0.1.
if ! grep -q "[[:space:]]$host\$" /etc/hosts; then
  if [ -w /etc/hosts ]; then
    echo "127.0.0.1 $host" >> /etc/hosts
  else
    echo "127.0.0.1 $host" | sudo tee -a /etc/hosts > /dev/null
  fi
fi

# Node: the API server runs in the node's network namespace and reaches the Dex NodePort
# (32000) on the node's own address, which the issuer port (32000) must equal.
node_ip="$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$node" | awk '{print $1}')"
docker exec "$node" sh -c "grep -q '[[:space:]]$host\$' /etc/hosts || echo '$node_ip $host' >> /etc/hosts"
