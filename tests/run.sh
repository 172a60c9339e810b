#!/usr/bin/env bash
# Install what the tests need (tierlog, test libraries, kcat), check lint and types, and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kcat >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq kcat) >/dev/null
    else
        (sudo apt-get update -qq && sudo apt-get install -y -qq kcat) >/dev/null
    fi
fi
python3 -m pip install -q -e '.[test]'
# Guard rails first (the settings are in pyproject.toml): lint, then types.
python3 -m ruff check --quiet .
python3 -m mypy
exec python3 -m pytest -q "$@"
