#!/bin/sh
# One-shot service of docker-compose.etcd.yml: the example's TLS material,
# made once with openssl, kept in two volumes.
#
#   /etcd-ca/ca.key     the CA's key: only this service mounts it
#   /tls/ca.pem         the CA every member and node trusts
#   /tls/member.pem,key etcd members: serving (client and peer ports) and
#                       peer client auth; SANs etcd1..etcd3, localhost, 127.0.0.1
#   /tls/client.pem,key the pglease nodes' client certificate (key readable
#                       by postgres only)
#
# etcd runs with --client-cert-auth and --peer-client-cert-auth, so a
# connection without a certificate signed by this CA is refused, and plain
# http is not served at all.  Existing files are kept (a restart or a second
# `up` changes nothing); to make new ones: docker-compose -f
# docker-compose.etcd.yml down -v (it removes the data too).  More members:
# add their names to MEMBERS (PGLEASE_ETCD_MEMBERS) before the first start.
set -eu

tls=${PGLEASE_TLS_DIR:-/tls}
ca_dir=${PGLEASE_CA_DIR:-/etcd-ca}
members=${PGLEASE_ETCD_MEMBERS:-etcd1 etcd2 etcd3}
days=${PGLEASE_TLS_DAYS:-3650}

if [ -s "$tls/ca.pem" ] && [ -s "$tls/member.pem" ] && [ -s "$tls/member.key" ] &&
   [ -s "$tls/client.pem" ] && [ -s "$tls/client.key" ]; then
    echo "etcd-certs: certificates in $tls already made; nothing to do"
    exit 0
fi

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -s "$ca_dir/ca.key" ]; then
    key "$ca_dir/ca.key"
fi
openssl req -x509 -new -key "$ca_dir/ca.key" -days "$days" -subj "/CN=pglease example etcd CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem

san="DNS:localhost,IP:127.0.0.1"
for m in $members; do san="$san,DNS:$m"; done

# sign NAME EXTENSIONS: NAME.key and NAME.pem, signed by the CA.
sign() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey "$ca_dir/ca.key" -CAcreateserial \
        -days "$days" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
sign member "extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
sign client "extendedKeyUsage=clientAuth"

install -m 0644 ca.pem member.pem client.pem "$tls/"
install -m 0400 -o root -g root member.key "$tls/member.key"
install -m 0400 -o postgres -g postgres client.key "$tls/client.key"
chmod 0755 "$tls"
echo "etcd-certs: made a CA, the members' certificate ($san) and the nodes' client certificate in $tls"
