#!/usr/bin/env bash
# Run the whole test suite: the README's test command, and what CI runs.
#
# Installs promtool and nginx (the proxy tests' upstream) if missing, creates tests/.venv (with the Python the gateway is built against) holding the real
# packages the tests serve (Flask, Django, Beaker, Paste), then runs cargo's tests,
# which start the real binary on port 0 and talk HTTP to it over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool (Debian package prometheus) checks the /metrics output.
if ! command -v promtool >/dev/null; then
    echo "tests/run.sh: installing promtool (apt package prometheus)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# nginx (Debian) is a real upstream for tests/proxy.rs.
if [ ! -x /usr/sbin/nginx ]; then
    echo "tests/run.sh: installing nginx (apt package nginx-light)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi

python="${PYO3_PYTHON:-python3}"
venv=tests/.venv
stamp="$venv/.requirements"
if [ ! -f "$venv/pyvenv.cfg" ] || ! cmp -s tests/requirements.txt "$stamp"; then
    echo "tests/run.sh: creating $venv with $("$python" --version)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$stamp"
fi
export GATEWAY_TEST_VENV="$PWD/$venv"

cargo test --workspace --all-targets "$@"
