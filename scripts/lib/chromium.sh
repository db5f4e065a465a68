# Sourced by scripts/test: Debian's Chromium and ChromeDriver for the console's browser tests
# (tests/it/console.rs), installed with apt-get when missing (never a browser download by a
# test tool). Exports HERALD_CHROMIUM and HERALD_CHROMEDRIVER.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing Debian's chromium and chromium-driver"
  sudo_if_needed=()
  if [ "$(id -u)" != 0 ]; then sudo_if_needed=(sudo); fi
  "${sudo_if_needed[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo_if_needed[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
export HERALD_CHROMIUM=/usr/bin/chromium
export HERALD_CHROMEDRIVER=/usr/bin/chromedriver
