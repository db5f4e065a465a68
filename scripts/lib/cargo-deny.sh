# Sourced by .ci/run: installs cargo-deny from crates.io into the cache (once per version,
# built with `cargo install --locked`) and exports HERALD_CARGO_DENY.
CARGO_DENY_VERSION=0.20.2
cargo_deny_dir="$HERALD_CACHE/tools/cargo-deny-$CARGO_DENY_VERSION"
if [ ! -x "$cargo_deny_dir/bin/cargo-deny" ]; then
  echo "installing cargo-deny $CARGO_DENY_VERSION into $cargo_deny_dir"
  rm -rf "$cargo_deny_dir.tmp"
  # Built in a temporary directory of its own, not in the project's target directory.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$cargo_deny_dir.tmp" \
    "cargo-deny@$CARGO_DENY_VERSION"
  rm -rf "$cargo_deny_dir" && mv "$cargo_deny_dir.tmp" "$cargo_deny_dir"
fi
export HERALD_CARGO_DENY="$cargo_deny_dir/bin/cargo-deny"
"$HERALD_CARGO_DENY" --version
