# Sourced by scripts/test: installs the CloudEvents SDK programs of the interop matrix
# (tests/interop/, tests/it/interop.rs) into the cache, keyed by their pinned versions: the Go one
# built with the Go module proxy (go.sum pins sdk-go), the JavaScript one with `npm ci` from
# package-lock.json, the Python one into a venv from requirements.txt. Exports
# HERALD_INTEROP_GO (binary), HERALD_INTEROP_NODE_PATH (node_modules) and HERALD_INTEROP_PYTHON
# (the venv's python). A missing toolchain leaves its variable unset and the matrix skips that
# SDK with a message, except under CI, where it is an error.
interop_dir="$HERALD_CACHE/interop"
mkdir -p "$interop_dir"
interop_missing() {
  if [ "${CI:-}" = "true" ]; then echo "interop: $1 is required" >&2; return 1; fi
  echo "interop: $1 not found, the matrix skips that SDK" >&2
}
interop_key() { cat "$@" | sha256sum | cut -c1-16; }

if command -v go >/dev/null; then
  # go build is incremental (GOCACHE); the module cache keeps sdk-go by version.
  (cd tests/interop/go && GOFLAGS=-mod=readonly GOMODCACHE="$HERALD_CACHE/go/mod" \
    GOCACHE="$HERALD_CACHE/go/build" go build -o "$interop_dir/go-interop" .)
  export HERALD_INTEROP_GO="$interop_dir/go-interop"
  echo "interop go: $(sed -n 's:^require github.com/cloudevents/sdk-go/v2 \(.*\)$:sdk-go \1:p' tests/interop/go/go.mod)"
else
  interop_missing go
fi

if command -v npm >/dev/null && command -v node >/dev/null; then
  js_dir="$interop_dir/js-$(interop_key tests/interop/js/package-lock.json)"
  if [ ! -f "$js_dir/.complete" ]; then
    echo "installing the JavaScript SDK into $js_dir"
    rm -rf "$js_dir" && mkdir -p "$js_dir"
    cp tests/interop/js/package.json tests/interop/js/package-lock.json "$js_dir/"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$js_dir/.complete"
  fi
  export HERALD_INTEROP_NODE_PATH="$js_dir/node_modules"
  echo "interop js: cloudevents $(node -p "require('$js_dir/node_modules/cloudevents/package.json').version")"
else
  interop_missing node/npm
fi

if command -v python3 >/dev/null; then
  py_dir="$interop_dir/python-$(interop_key tests/interop/python/requirements.txt)"
  if [ ! -f "$py_dir/.complete" ]; then
    echo "installing the Python SDK into $py_dir"
    rm -rf "$py_dir"
    python3 -m venv "$py_dir"
    "$py_dir/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/python/requirements.txt
    touch "$py_dir/.complete"
  fi
  export HERALD_INTEROP_PYTHON="$py_dir/bin/python"
  echo "interop python: $("$HERALD_INTEROP_PYTHON" -m pip show cloudevents 2>/dev/null | sed -n 's/^Version: /cloudevents /p')"
else
  interop_missing python3
fi
