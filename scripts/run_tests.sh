#!/usr/bin/env bash
# Run every test: the unit tests in tests/, then every notebook in solutions/ with nbval.
# Extra arguments go to pytest (for example: -k sineroad, or -x).
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
# The browser tests (tests/e2e) need Debian's chromium: installed here when missing.
bash scripts/e2e_prereqs.sh
python -m pytest tests solutions --nbval-lax --nbval-current-env -p no:cacheprovider \
  --durations=15 "$@"
