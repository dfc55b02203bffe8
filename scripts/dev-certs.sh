#!/usr/bin/env bash
# Development certificates for Runnel's TLS listeners and inter-node mutual TLS. openssl only.
#
#   scripts/dev-certs.sh [--client NAME]... [--san SAN]... OUTDIR [NODE_ID...]
#
# NODE_IDs default to 1 2 3; client names default to admin alice bob. Writes into OUTDIR:
#   ca.pem, ca-key.pem          the development CA (ssl.truststore.location on every node and
#                               client); its key signs the rest and stays here
#   node-<id>.pem               private key + certificate chain (node certificate, CA), what
#                               ssl.keystore.location and rpc.ssl.keystore.location take. SANs:
#                               DNS:localhost, DNS:runnel<id> (the compose host names),
#                               IP:127.0.0.1, URI:urn:runnel:node:<id> (the node identity that
#                               inter-node TLS checks), plus every --san (e.g. --san DNS:k.example
#                               or --san IP:10.0.0.5). serverAuth and clientAuth.
#   client-<name>.pem           private key + chain of a client certificate with subject CN=<name>
#                               (clientAuth): the mTLS principal User:CN=<name>, or User:<name>
#                               with ssl.principal.mapping.rules=RULE:^CN=(.*)$/$1/
#   node-<id>-encrypted.pem, client-<name>-encrypted.pem
#                               the same with the key encrypted (PKCS#8, AES-256-CBC); the
#                               password (ssl.key.password) is in key-password
#   evil-ca.pem, evil.pem       an unrelated CA and a certificate from it (CN=admin, the SANs of
#                               node 1 including urn:runnel:node:1): what must be refused
#
# Idempotent: an existing CA is kept, and a file that exists and verifies against its CA is not
# written again (delete OUTDIR to start over). Keys are EC P-256. The CA key files are private
# (0600); the other PEM files are readable by all (0644) so that a container running under
# another user id can read them when mounted: they are for development, not production.
#
# Environment: DEV_CERTS_DAYS (leaf validity, 825), DEV_CERTS_KEY_PASSWORD (runnel-dev).
set -euo pipefail

usage() {
    echo "usage: $0 [--client NAME]... [--san SAN]... OUTDIR [NODE_ID...]" >&2
    exit 2
}

clients=()
extra_sans=()
while [ $# -gt 0 ]; do
    case "$1" in
    --client)
        [ $# -ge 2 ] || usage
        clients+=("$2")
        shift 2
        ;;
    --san)
        [ $# -ge 2 ] || usage
        extra_sans+=("$2")
        shift 2
        ;;
    -h | --help) usage ;;
    --*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage
out=$1
shift
nodes=("$@")
[ ${#nodes[@]} -gt 0 ] || nodes=(1 2 3)
[ ${#clients[@]} -gt 0 ] || clients=(admin alice bob)
for id in "${nodes[@]}"; do
    case "$id" in
    '' | *[!0-9]*)
        echo "dev-certs: node id '$id' is not a number" >&2
        exit 2
        ;;
    esac
done
for name in "${clients[@]}"; do
    case "$name" in
    '' | *[!A-Za-z0-9._-]*)
        echo "dev-certs: client name '$name' must be letters, digits, '.', '_' or '-'" >&2
        exit 2
        ;;
    esac
done

days=${DEV_CERTS_DAYS:-825}
password=${DEV_CERTS_KEY_PASSWORD:-runnel-dev}
command -v openssl >/dev/null || {
    echo "dev-certs: openssl is not installed" >&2
    exit 1
}

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A minimal configuration, so the system openssl.cnf adds no extensions of its own.
cat >"$work/req.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
EOF

# ca NAME SUBJECT: a self-signed CA in $out/NAME.pem with its key in $out/NAME-key.pem.
make_ca() {
    local name=$1 subject=$2
    if [ -s "$out/$name.pem" ] && [ -s "$out/$name-key.pem" ]; then
        return 0
    fi
    cat "$work/req.cnf" - >"$work/$name.cnf" <<'EOF'
[ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$out/$name-key.pem" 2>/dev/null)
    openssl req -new -x509 -config "$work/$name.cnf" -key "$out/$name-key.pem" -subj "$subject" \
        -days 3650 -sha256 -extensions ext \
        -set_serial "0x$(openssl rand -hex 15)" -out "$out/$name.pem"
    chmod 0644 "$out/$name.pem"
    echo "dev-certs: wrote $out/$name.pem" >&2
}

# valid FILE CA: FILE exists and its certificate verifies against CA (and the key fits it).
valid() {
    local file=$1 ca=$2
    [ -s "$file" ] || return 1
    openssl verify -CAfile "$ca" -purpose any "$file" >/dev/null 2>&1 || return 1
    [ "$(openssl x509 -in "$file" -noout -pubkey 2>/dev/null)" = \
        "$(openssl pkey -in "$file" -passin "pass:$password" -pubout 2>/dev/null)" ]
}

# leaf CA NAME SUBJECT EKU SANS: $out/NAME.pem (key + certificate + CA) and
# $out/NAME-encrypted.pem (the same with an encrypted key); SANS may be empty.
leaf() {
    local ca=$1 name=$2 subject=$3 eku=$4 sans=$5
    if valid "$out/$name.pem" "$out/$ca.pem" && valid "$out/$name-encrypted.pem" "$out/$ca.pem"; then
        return 0
    fi
    {
        echo "[ext]"
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature, keyEncipherment"
        echo "extendedKeyUsage = $eku"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
        [ -z "$sans" ] || echo "subjectAltName = $sans"
    } >"$work/$name.ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$name.key" 2>/dev/null
    openssl req -new -config "$work/req.cnf" -key "$work/$name.key" -subj "$subject" \
        -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA "$out/$ca.pem" -CAkey "$out/$ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 15)" -days "$days" -sha256 \
        -extensions ext -extfile "$work/$name.ext" -out "$work/$name.crt" 2>/dev/null
    openssl pkcs8 -topk8 -in "$work/$name.key" -v2 aes-256-cbc -v2prf hmacWithSHA256 \
        -passout "pass:$password" -out "$work/$name.enc.key"
    cat "$work/$name.key" "$work/$name.crt" "$out/$ca.pem" >"$work/$name.pem"
    cat "$work/$name.enc.key" "$work/$name.crt" "$out/$ca.pem" >"$work/$name-encrypted.pem"
    chmod 0644 "$work/$name.pem" "$work/$name-encrypted.pem"
    mv "$work/$name.pem" "$out/$name.pem"
    mv "$work/$name-encrypted.pem" "$out/$name-encrypted.pem"
    echo "dev-certs: wrote $out/$name.pem ($subject)" >&2
}

node_sans() {
    local id=$1 sans san
    sans="DNS:localhost, DNS:runnel$id, IP:127.0.0.1, URI:urn:runnel:node:$id"
    for san in "${extra_sans[@]+"${extra_sans[@]}"}"; do
        sans="$sans, $san"
    done
    printf '%s' "$sans"
}

make_ca ca "/O=Runnel development/CN=Runnel development CA"
make_ca evil-ca "/O=Evil development/CN=Evil development CA"
printf '%s\n' "$password" >"$out/key-password"
chmod 0644 "$out/key-password"

for id in "${nodes[@]}"; do
    leaf ca "node-$id" "/O=Runnel development/CN=runnel$id" "serverAuth, clientAuth" "$(node_sans "$id")"
done
for name in "${clients[@]}"; do
    leaf ca "client-$name" "/CN=$name" "clientAuth" ""
done
# Signed by the unrelated CA, but otherwise a perfect impostor of node 1 and of the admin user.
leaf evil-ca evil "/CN=admin" "serverAuth, clientAuth" "$(node_sans 1)"
