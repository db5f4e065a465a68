# Sourced by scripts/test: builds kube-apiserver and etcd from the Go module proxy (once per
# version, into the cache) and exports HERALD_KUBE_APISERVER and HERALD_ETCD. The wrapper
# modules in scripts/kube/ pin the versions; kube-apiserver comes from k8s.io/kubernetes with
# each staging module replaced by its published tag. The tests start their own servers.
KUBE_VERSION=$(sed -n 's/^require k8s.io\/kubernetes v\(.*\)$/\1/p' scripts/kube/apiserver/go.mod)
ETCD_VERSION=$(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 v\(.*\)$/\1/p' scripts/kube/etcd/go.mod)
kube_dir="$HERALD_CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
build_with_go() { # module-dir package output
  local work="$kube_dir/build/$(basename "$1")"
  mkdir -p "$work"
  cp "$1/go.mod" "$work/go.mod"
  (cd "$work" && GOFLAGS=-mod=mod GOMODCACHE="$HERALD_CACHE/go/mod" GOCACHE="$HERALD_CACHE/go/build" \
    go build -o "$3" "$2")
}
if [ ! -x "$kube_dir/bin/kube-apiserver" ] || [ ! -x "$kube_dir/bin/etcd" ]; then
  echo "building kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION into $kube_dir (once)"
  mkdir -p "$kube_dir/bin"
  build_with_go scripts/kube/etcd go.etcd.io/etcd/server/v3 "$kube_dir/bin/etcd"
  build_with_go scripts/kube/apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_dir/bin/kube-apiserver"
  rm -rf "$kube_dir/build"
fi
export HERALD_KUBE_APISERVER="$kube_dir/bin/kube-apiserver"
export HERALD_ETCD="$kube_dir/bin/etcd"
echo "kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION: $kube_dir/bin"
