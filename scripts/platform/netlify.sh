#!/usr/bin/env bash
# Netlify's own code for the platform tests (tests/platform/sam_netlify), installed with `npm ci` from the committed
# tests/platform/sam_netlify/package.json and package-lock.json (exact versions) into .cache/platform/netlify:
#   @netlify/config            reads netlify.toml as a Netlify build does (parse, validate, normalize redirects)
#   @netlify/redirect-parser   turns those redirects into the rules Netlify's matcher loads
#   netlify-redirector         Netlify's redirect matcher (WebAssembly), the one `netlify dev` routes requests with
#
#   bash scripts/platform/netlify.sh      # creates or refreshes .cache/platform/netlify; prints its node_modules
#
# Cached by a stamp: a second run with the same lock file and the same Node does nothing (and needs no network).
# @netlify/config 25 needs Node 22.12+; 24.6.0, the last release for Node 18.14+, runs on Debian's Node 20.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/platform/lib/common.sh
umask 022

source_dir=tests/platform/sam_netlify
target=.cache/platform/netlify
stamp="$target/.stamp"

ensure_node 18 14  # @netlify/config 24

wanted="$( { cat "$0" "$source_dir/package.json" "$source_dir/package-lock.json"; node --version; } \
  | sha256sum | cut -c1-64)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -d "$target/node_modules" ]; then
  echo "$target/node_modules"
  exit 0
fi

echo "netlify.sh: npm ci into $target ($(node --version))" >&2
rm -rf "$target"
mkdir -p "$target"
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target/"
(cd "$target" && npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci failed in $target"
(cd "$target" && node --input-type=module -e "import '@netlify/config'; import '@netlify/redirect-parser'" \
  && node -e "require('netlify-redirector')") || fail "$target does not load Netlify's packages"
echo "$wanted" > "$stamp"
echo "$target/node_modules"
