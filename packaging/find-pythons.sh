#!/usr/bin/env bash
# Print the CPython interpreters the wheels are built for, one executable per line,
# oldest first: for each of 3.9-3.13, the newest pyenv install (under `pyenv root`, or
# ~/.pyenv), else a python3.X on PATH that runs.
set -euo pipefail

root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for minor in 9 10 11 12 13; do
    found=""
    for candidate in $(ls -d "$root"/versions/3."$minor".*/bin/python3."$minor" 2>/dev/null | sort -V -r); do
        found=$candidate
        break
    done
    if [ -z "$found" ] && command -v "python3.$minor" >/dev/null; then
        found=$(command -v "python3.$minor")
    fi
    if [ -n "$found" ] && "$found" -c 'import sys' 2>/dev/null; then
        echo "$found"
    fi
done
