#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
set -euo pipefail
if ! command -v chromium >/dev/null; then
  echo "[browser] installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q chromium >/dev/null
fi
