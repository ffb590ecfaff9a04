#!/usr/bin/env bash
# `pip install`, end to end: the gateway built as a Python package, installed into fresh
# virtualenvs of two CPython versions on this machine (the oldest and the newest of
# 3.9-3.13 that packaging/find-pythons.sh finds: pyenv's), serving from each.
#
# - oldest: the manylinux_2_28 wheel from packaging/build-wheels.sh (linked by zig),
#   installed with pip;
# - newest: `pip install .` from this checkout (PEP 517: pip fetches maturin itself;
#   linked by this machine's toolchain).
# Each version is built once (a wheel is per CPython version), with the cargo profile
# `wheel-test`: no optimisation and no LTO, to keep CI short; releases use `release`.
#
# In each virtualenv: `wsgi-gateway --version` and `python -m wsgi_gateway --version`
# name the gateway and that Python; the console script and `python -m wsgi_gateway`
# each serve tests/apps/pip_install_probe.py (copied into the virtualenv's
# site-packages, served from an empty folder) with two workers on 127.0.0.1 (port 0,
# read from the log); it must report that virtualenv's sys.version_info, sys.prefix and
# python, be a worker of the process started, see no handoff variables, and do so again
# after a rolling reload (SIGHUP); SIGTERM must stop everything with exit status 0. A
# worker whose supervisor is another version refuses to start. An `app.virtualenv` naming another virtualenv is
# refused with a message naming both. Every wait is bounded.
#
# CI runs this as its own step of .ci/run (it builds twice, which tests/run.sh does not).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

work=$root/target/pip-install
rm -rf "$work/venvs" "$work/wheels" "$work/empty" "$work/logs"
mkdir -p "$work/venvs" "$work/wheels" "$work/empty" "$work/logs"
# The environment of a user who has activated nothing.
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME GATEWAY_CONFIG PYO3_PYTHON

mapfile -t pythons < <(packaging/find-pythons.sh)
if [ "${#pythons[@]}" -lt 2 ]; then
    echo "tests/pip_install.sh: needs two of CPython 3.9-3.13 (pyenv); found: ${pythons[*]:-none}" >&2
    exit 1
fi
oldest=${pythons[0]}
newest=${pythons[${#pythons[@]} - 1]}
gateway_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

gateway_pid=""
cleanup() {
    if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -KILL "$gateway_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

new_venv() { # PYTHON NAME -> prints the virtualenv's path
    local venv=$work/venvs/$2
    "$1" -m venv "$venv"
    echo "$venv"
}

echo "== build and install: $("$oldest" --version), the wheel of packaging/build-wheels.sh"
WHEEL_PROFILE=wheel-test WHEEL_OUT=$work/wheels packaging/build-wheels.sh "$oldest"
venv_old=$(new_venv "$oldest" old)
wheel=$(ls "$work"/wheels/wsgi_gateway-*-cp3"$("$oldest" -c 'import sys; print(sys.version_info[1])')"-*.whl)
"$venv_old/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"

echo "== build and install: $("$newest" --version), pip install . (PEP 517)"
venv_new=$(new_venv "$newest" new)
MATURIN_PEP517_ARGS="--profile wheel-test" \
    "$venv_new/bin/python" -m pip install --quiet --disable-pip-version-check "$root"

# check_probe VENV URL LABEL LOG PIDS [OLD_PIDS]: the probe's answers must come from
# VENV's Python, in a worker of the gateway started last (not one listed in OLD_PIDS);
# the workers' pids go to the file PIDS.
check_probe() {
    local venv=$1 url=$2 label=$3 log=$4 pids=$5 old_pids=${6:-/dev/null}
    "$venv/bin/python" - "$url" "$venv" "$gateway_pid" "$label" "$pids" "$old_pids" <<'PY' ||
import json, os, sys, urllib.request

url, venv, supervisor, label, pids, old_pids = sys.argv[1:]
venv, supervisor = os.path.realpath(venv), int(supervisor)
with open(old_pids) as f:
    old = {int(pid) for pid in f.read().split()}
seen_pids = set()
for attempt in range(4):  # new connections: both workers may answer
    with urllib.request.urlopen(url + "/", timeout=10) as response:
        seen = json.load(response)
    problems = []
    if seen["version_info"] != list(sys.version_info[:3]):
        problems.append(f"version_info {seen['version_info']}, expected {list(sys.version_info[:3])}")
    if os.path.realpath(seen["prefix"]) != venv:
        problems.append(f"sys.prefix {seen['prefix']}, expected {venv}")
    if os.path.realpath(os.path.dirname(seen["executable"])) != os.path.join(venv, "bin"):
        problems.append(f"sys.executable {seen['executable']} is not the virtualenv's")
    if not os.path.realpath(seen["module_file"]).startswith(os.path.join(venv, "lib")):
        problems.append(f"the app was imported from {seen['module_file']}, not site-packages")
    if seen["ppid"] != supervisor or seen["pid"] == supervisor:
        problems.append(f"served by pid {seen['pid']} (parent {seen['ppid']}), not a worker of {supervisor}")
    if seen["pid"] in old:
        problems.append(f"served by pid {seen['pid']}, a worker from before the reload")
    seen_pids.add(seen["pid"])
    if seen["handoff_variables"]:
        problems.append(f"the app sees {seen['handoff_variables']}")
    if problems:
        sys.exit(f"{label}: " + "; ".join(problems))
with open(pids, "w") as f:
    f.write(" ".join(map(str, sorted(seen_pids))))
print(f"{label}: Python {seen['version_info']} in {seen['prefix']}, worker pids {sorted(seen_pids)}")
PY
        { cat "$log" >&2; fail "$label: wrong answer"; }
}

# serve_and_check VENV LABEL COMMAND...: serve the probe with COMMAND, check, SIGTERM.
serve_and_check() {
    local venv=$1 label=$2
    shift 2
    local log=$work/logs/$label.log
    (cd "$work/empty" && exec "$@" serve --app pip_install_probe:application \
        --bind 127.0.0.1:0 --workers 2 >"$log" 2>&1) &
    gateway_pid=$!
    wait_until 60 grep -qs "listening on http://127.0.0.1:" "$log" ||
        { cat "$log" >&2; fail "$label: not listening within 60 s"; }
    local url
    url=$(grep -o "listening on http://127.0.0.1:[0-9]*" "$log" | head -n 1 | sed 's/^listening on //')
    check_probe "$venv" "$url" "$label" "$log" "$work/pids-before"
    # A rolling reload (SIGHUP) starts new workers the same way.
    kill -HUP "$gateway_pid"
    wait_until 60 grep -qs "reload complete" "$log" ||
        { cat "$log" >&2; fail "$label: no reload within 60 s of SIGHUP"; }
    check_probe "$venv" "$url" "$label, reloaded" "$log" "$work/pids-after" "$work/pids-before"
    kill -TERM "$gateway_pid"
    # A watchdog bounds the wait: SIGKILL (status 137) after 30 s.
    (sleep 30 && kill -KILL "$gateway_pid" 2>/dev/null) &
    local watchdog=$! status=0
    wait "$gateway_pid" || status=$?
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    [ "$status" = 0 ] || { cat "$log" >&2; fail "$label: exit status $status after SIGTERM (137: killed after 30 s)"; }
    ! pgrep -f "wsgi_gateway serve --app pip_install_probe" >/dev/null ||
        fail "$label: a worker outlived its supervisor"
    gateway_pid=""
}

for venv in "$venv_old" "$venv_new"; do
    python_version=$("$venv/bin/python" -c 'import platform; print(platform.python_version())')
    name="$(basename "$venv") (Python $python_version)"
    echo "== $name"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp tests/apps/pip_install_probe.py "$site/"

    expected="wsgi-gateway $gateway_version (Python $python_version)"
    for command in "$venv/bin/wsgi-gateway" "$venv/bin/python -m wsgi_gateway"; do
        shown=$($command --version)
        [ "$shown" = "$expected" ] || fail "$command --version: '$shown', expected '$expected'"
        echo "$command --version: $shown"
    done

    # A worker whose supervisor is another version (the package upgraded under a running
    # gateway) refuses to start.
    status=0
    shown=$(WSGI_GATEWAY_SUPERVISOR_VERSION=0.0.0-old "$venv/bin/python" -m wsgi_gateway check 2>&1) || status=$?
    [ "$status" = 1 ] && grep -q "its supervisor is 0.0.0-old" <<<"$shown" ||
        fail "$name: a worker of another version: exit $status, '$shown'"

    serve_and_check "$venv" "$name, console script" "$venv/bin/wsgi-gateway"
    serve_and_check "$venv" "$name, python -m" "$venv/bin/python" -m wsgi_gateway

    # A configured virtualenv other than the one running the gateway: refused, clearly.
    other=$([ "$venv" = "$venv_old" ] && echo "$venv_new" || echo "$venv_old")
    printf '[app]\nwsgi = "pip_install_probe:application"\nvirtualenv = "%s"\n' "$other" >"$work/other.toml"
    status=0
    (cd "$work/empty" && timeout 60 "$venv/bin/wsgi-gateway" serve --config "$work/other.toml" \
        --bind 127.0.0.1:0 >"$work/logs/other.log" 2>&1) || status=$?
    [ "$status" != 0 ] && [ "$status" != 124 ] || fail "$name: another app.virtualenv: exit status $status"
    grep -q "app.virtualenv $other: the gateway was started by the Python of" "$work/logs/other.log" ||
        { cat "$work/logs/other.log" >&2; fail "$name: another app.virtualenv: no clear message"; }
    echo "$name: app.virtualenv $other refused (exit $status)"
done

echo "pip_install: 2 passed, 0 failed"
