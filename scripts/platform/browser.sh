#!/usr/bin/env bash
# A real headless browser for the inspector's browser test (tests/platform/browser):
#   chromium, chromium-driver   Debian's Chromium (apt-get; Playwright's own browser builds are never downloaded)
#   playwright-core             Playwright's driver only (no browser, no install script), pinned by the committed
#                               tests/platform/browser/package.json and package-lock.json, `npm ci` into
#                               .cache/platform/browser
#
#   bash scripts/platform/browser.sh      # installs what is missing; prints the node_modules folder
#
# Idempotent and quiet: a second run with Chromium installed and the same lock file and Node does nothing (and needs
# no network). Installing Chromium needs root (apt-get); as another user the script says what to install.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/platform/lib/common.sh
umask 022

source_dir=tests/platform/browser
target=.cache/platform/browser
stamp="$target/.stamp"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi
/usr/bin/chromium --version >/dev/null 2>&1 || fail "/usr/bin/chromium does not start"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || fail "Node $(node --version) is too old: playwright-core 1.65 needs Node 20 or newer"

wanted="$( { cat "$0" "$source_dir/package.json" "$source_dir/package-lock.json"; node --version; } \
  | sha256sum | cut -c1-64)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -d "$target/node_modules/playwright-core" ]; then
  echo "$target/node_modules"
  exit 0
fi

echo "browser.sh: npm ci into $target ($(node --version))" >&2
rm -rf "$target"
mkdir -p "$target"
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target/"
(cd "$target" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2) \
  || fail "npm ci failed in $target"
(cd "$target" && node -e "require('playwright-core')") || fail "$target does not load playwright-core"
echo "$wanted" > "$stamp"
echo "$target/node_modules"
