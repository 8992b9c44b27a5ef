# Sourced by .ci/run (set -euo pipefail, at the repository's root): what the browser and TLS tests
# need from Debian's packages.
# The dashboard's browser test: Debian's Chromium and its WebDriver.
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver for the dashboard's browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; }
fi
# The rediss:// test makes its CA and server certificate with the openssl command.
if ! command -v openssl >/dev/null; then
    echo "installing openssl for the Redis TLS test"
    apt-get install -y --no-install-recommends openssl >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y --no-install-recommends openssl >/dev/null; }
fi
# Here a missing browser fails the browser tests instead of skipping them.
export REQUIRE_BROWSER_TESTS=1
