#!/usr/bin/env bash
# The end-to-end tests (tests/e2e) drive Debian's Chromium headless with Playwright.
# Installs it when /usr/bin/chromium is missing (needs root and the Debian package mirror);
# does nothing when it is already there. Never fails the test run: without a browser the
# browser tests skip with a message that says how to install it.
set -uo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "${RLDEBUG_NO_APT:-0}" = "1" ]; then
  echo "e2e: $CHROMIUM is missing and RLDEBUG_NO_APT=1: the browser tests will be skipped." >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "e2e: $CHROMIUM is missing and this is not a Debian-like system (no apt-get)." >&2
  echo "e2e: install Chromium so that $CHROMIUM exists; the browser tests are skipped until then." >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "e2e: $CHROMIUM is missing and installing it needs root: run" >&2
    echo "e2e:     sudo apt-get update && sudo apt-get install -y chromium" >&2
    echo "e2e: the browser tests are skipped until then." >&2
    exit 0
  fi
fi
echo "e2e: installing Debian's chromium for the browser tests (apt-get install -y chromium)"
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
  echo "e2e: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
else
  echo "e2e: could not install chromium with apt-get (no access to the Debian mirror?)." >&2
  echo "e2e: the browser tests are skipped until $CHROMIUM exists." >&2
fi
exit 0
