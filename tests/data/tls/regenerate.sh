#!/bin/bash
# Regenerates the loopback-only test certificates in this directory:
#   ca.pem            "pam_gateway test CA" (its key is thrown away)
#   other-ca.pem      a second CA nobody trusts (key thrown away)
#   leaf.pem/.key     server cert for IP 127.0.0.1 and localhost, from ca.pem
#   wrong-name.pem/.key  server cert for gateway.invalid only, from ca.pem
# EC P-256, valid 2020-01-01 to 2120-01-01. Used by tests/http_client.rs, by
# make bench (the https case) and by the slapd harness
# (test-support/src/slapd.rs: leaf.pem/.key are slapd's certificate, ca.pem
# its CA, other-ca.pem the "wrong CA"); never by anything outside loopback.
# Keys are unencrypted PKCS#8 ("BEGIN PRIVATE KEY"): rustls and the GnuTLS of
# Debian's slapd both read that.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/ca.cnf" <<'CNF'
[ ca ]
default_ca = myca
[ myca ]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = pol
copy_extensions = none
unique_subject = no
[ pol ]
commonName = supplied
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ leaf_ok ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf_wrong ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:gateway.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
dates=(-startdate 20200101000000Z -enddate 21200101000000Z)
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() { # out csr ext [ca-cert ca-key | -selfsign key]
    local out=$1 csr=$2 ext=$3; shift 3
    (cd "$work" && rm -f index.txt* serial* && touch index.txt && echo 01 > serial &&
        openssl ca -batch -config ca.cnf "$@" -extensions "$ext" "${dates[@]}" \
            -in "$csr" -out "$out" -notext 2>/dev/null)
}
for ca in ca:"pam_gateway test CA" other-ca:"pam_gateway untrusted test CA"; do
    name=${ca%%:*}
    key "$work/$name.key"
    openssl req -new -key "$work/$name.key" -subj "/CN=${ca#*:}" -out "$work/$name.csr"
    sign "$PWD/$name.pem" "$name.csr" v3_ca -selfsign -keyfile "$name.key"
done
cp ca.pem "$work/ca.pem"
for leaf in leaf:leaf_ok:127.0.0.1 wrong-name:leaf_wrong:gateway.invalid; do
    IFS=: read -r name ext cn <<<"$leaf"
    key "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
    sign "$PWD/$name.pem" "$name.csr" "$ext" -cert ca.pem -keyfile ca.key
done
openssl verify -CAfile ca.pem leaf.pem wrong-name.pem
