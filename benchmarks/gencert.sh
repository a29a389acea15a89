#!/usr/bin/env bash
# The guide's TLS step as the baseline for `nox -s bench`: what examples/k8s/gencert.sh does
# (two RSA-2048 keys, CA and leaf with CN kube-ca, 10 days, one SAN), written from its
# description in shared/reference/field-notes.md. Usage: gencert.sh OUTDIR
set -euo pipefail
out=${1:?usage: gencert.sh OUTDIR}
mkdir -p "$out/ssl"
cd "$out"
cat > ssl/req.cnf <<CNF
[req]
req_extensions = v3_req
distinguished_name = req_distinguished_name
[req_distinguished_name]
[ v3_req ]
basicConstraints = CA:FALSE
keyUsage = nonRepudiation, digitalSignature, keyEncipherment
subjectAltName = @alt_names
[alt_names]
DNS.1 = dex.example.com
CNF
openssl genrsa -out ssl/ca-key.pem 2048 2>/dev/null
openssl req -x509 -new -nodes -key ssl/ca-key.pem -days 10 -out ssl/ca.pem -subj "/CN=kube-ca"
openssl genrsa -out ssl/key.pem 2048 2>/dev/null
openssl req -new -key ssl/key.pem -out ssl/csr.pem -subj "/CN=kube-ca" -config ssl/req.cnf
openssl x509 -req -in ssl/csr.pem -CA ssl/ca.pem -CAkey ssl/ca-key.pem -CAcreateserial \
  -out ssl/cert.pem -days 10 -extensions v3_req -extfile ssl/req.cnf 2>/dev/null
