#!/usr/bin/env bash
# Render a muflow HTML report in headless Chromium (Debian's `chromium` package) to a PNG.
#   scripts/screenshot_report.sh report.html report.png [WIDTHxHEIGHT]
# The flags keep Chromium off the network: the report must need nothing from outside.
set -euo pipefail
html=$(realpath "$1"); png=$2; size=${3:-1200,1600}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size="$size" --screenshot="$png" "file://$html" 2>/dev/null
echo "wrote $png"
