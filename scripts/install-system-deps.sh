#!/usr/bin/env bash
# Installs the system packages some tests use: Debian's Chromium (Playwright drives it; we never
# download a browser) and PostgreSQL (the web app's multi-user backend). Without root or apt,
# those tests skip with a reason instead.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: cannot install ${need[*]} (not root or no apt-get); the tests that need them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "note: apt-get install ${need[*]} failed; the tests that need them will skip" >&2
exit 0
