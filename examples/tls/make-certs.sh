#!/bin/sh
# A CA and a server certificate for 127.0.0.1 and localhost, for trying Herald's TLS locally:
# DIR/ca.crt, DIR/tls.crt, DIR/tls.key. Production certificates come from your PKI.
set -eu
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir" && cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.crt -days 30 -subj /CN=herald-example-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl req -new $ec -keyout tls.key -out tls.csr -subj /CN=localhost
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > tls.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 30 -extfile tls.ext
rm -f tls.csr tls.ext ca.srl
echo "wrote $dir/ca.crt $dir/tls.crt $dir/tls.key"
