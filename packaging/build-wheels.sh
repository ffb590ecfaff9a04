#!/usr/bin/env bash
# Build the wheels of wsgi-gateway with maturin: one manylinux wheel per CPython version.
#
#   packaging/build-wheels.sh                      # each CPython 3.9-3.13 found (pyenv, PATH)
#   packaging/build-wheels.sh 3.12 /usr/bin/python3.11   # versions or interpreters
#
# The wheels land in dist/ (WHEEL_OUT overrides); `pip install dist/wsgi_gateway-*-cp312-*.whl`
# then puts the `wsgi-gateway` command into that Python's virtualenv. WHEEL_PROFILE picks
# the cargo profile: `release` (default: fat LTO, what the benchmarks measure) or
# `wheel-test` (minutes instead of tens of minutes, for tests/pip_install.sh).
#
# Choices:
# - One wheel per version, not abi3: an abi3 wheel for 3.9+ is built against the limited
#   API of 3.9, which takes away fast paths the request path uses: vectorcall (app
#   calls, limited only from 3.12), METH_FASTCALL for the pyo3 methods the app calls
#   (start_response, wsgi.input.read, write: limited from 3.10), and borrowing a str's
#   UTF-8 (header names and values: limited from 3.10, otherwise a bytes copy each).
# - manylinux_2_28 (glibc 2.28: Debian 10, Ubuntu 20.04, RHEL 8 and later), linked by
#   zig (`maturin build --zig`, zig from the ziglang package on PyPI), since no
#   manylinux container runs here. maturin audits the result: only manylinux libraries,
#   no symbol newer than the tag. WHEEL_LINKER=native links with this machine's own
#   toolchain instead; the tag is then the oldest this glibc allows (manylinux_2_34 on
#   Debian 12), which suits an image built on the same distribution (deploy/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${WHEEL_PROFILE:-release}
out=${WHEEL_OUT:-dist}

# maturin, pinned in packaging/requirements.txt, in a private virtualenv.
tools=packaging/.venv
if [ ! -x "$tools/bin/maturin" ] || ! cmp -s packaging/requirements.txt "$tools/.requirements"; then
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check -r packaging/requirements.txt
    cp packaging/requirements.txt "$tools/.requirements"
fi

interpreters=()
if [ "$#" = 0 ]; then
    mapfile -t interpreters < <(packaging/find-pythons.sh)
else
    for wanted in "$@"; do
        case $wanted in
        */*) interpreters+=("$wanted") ;;
        *)
            found=$(packaging/find-pythons.sh | grep "/python$wanted\$" || true)
            [ -n "$found" ] || { echo "build-wheels.sh: no CPython $wanted found" >&2; exit 1; }
            interpreters+=("$found")
            ;;
        esac
    done
fi
[ "${#interpreters[@]}" -gt 0 ] || { echo "build-wheels.sh: no CPython 3.9-3.13 found" >&2; exit 1; }

args=()
case ${WHEEL_LINKER:-zig} in
zig) args+=(--zig --compatibility manylinux_2_28) ;;
native) ;;
*) echo "build-wheels.sh: WHEEL_LINKER is zig or native, not $WHEEL_LINKER" >&2; exit 1 ;;
esac
# Stripped: the release profile keeps line tables for `perf` on a cargo build, which
# would make a wheel of 21 MB instead of a few; WHEEL_STRIP=false keeps them.
args+=(--strip "${WHEEL_STRIP:-true}")
for python in "${interpreters[@]}"; do
    args+=(--interpreter "$python")
done
echo "build-wheels.sh: profile $profile, for: ${interpreters[*]}"
# PYO3_PYTHON would point every build at one Python: maturin sets it per interpreter.
# maturin finds zig as `python3 -m ziglang`: the tools' python comes first on PATH.
env -u PYO3_PYTHON PATH="$PWD/$tools/bin:$PATH" "$tools/bin/maturin" build --locked --profile "$profile" --out "$out" "${args[@]}"
