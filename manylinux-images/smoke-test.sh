#!/bin/sh
# The smoke test of a sharewheel image: the Dockerfile's last step (and, on the host,
# tests/test_manylinux_images.py). The `sharewheel` on PATH does the main job on the bundled
# example, as examples/run.sh does with a venv of its own:
#   1. sharewheel --version
#   2. build libacme 3.1.4 (examples/acme) with gcc and pack it as the native-lib wheel acme-native
#   3. build examples/acme-consumer against the installed provider (flags from pkg-config), repair it
#   4. install provider and consumer into one venv, call into libacme, `sharewheel check` that venv
#   5. glibc only: provider and consumer in two directories, one sys.path (musl's loader cannot
#      serve that: see "musllinux" in the top-level README.md)
# The consumer is built with $PYTHON, else /opt/python/cp312-cp312/bin/python (the interpreter the
# images run their own tools with), else python3. Only a temporary directory is written to, and it
# is removed at the end: the checkout may be mounted read-only.
# Usage: sh manylinux-images/smoke-test.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x /opt/python/cp312-cp312/bin/python ]; then PYTHON=/opt/python/cp312-cp312/bin/python; else PYTHON=python3; fi
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/sharewheel-smoke-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
export PIP_CACHE_DIR="$work/pip-cache" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
quiet=-q
fail() {
  echo "smoke-test: $*" >&2
  exit 1
}
case "$(ldd --version 2>&1 || true)" in
  *musl*) libc=musl ;;
  *) libc=glibc ;;
esac

echo "== sharewheel --version ($(command -v sharewheel))"
sharewheel --version

echo "== build libacme 3.1.4 and pack it"
sh "$root/examples/acme/build.sh" "$work/prefix" 3.1.4
sharewheel pack "$work/prefix" --name acme-native --version 3.1.4 --abi major -w "$work/providers"
set -- "$work"/providers/acme_native-3.1.4-*.whl
[ $# = 1 ] && [ -f "$1" ] || fail "pack left no single acme-native wheel: $*"
provider=$1

echo "== build acme-consumer against the installed provider ($("$PYTHON" --version))"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install $quiet setuptools wheel pkgconf "$provider"
# a copy without the build/ and *.egg-info a checkout may hold: setuptools writes into the project
mkdir "$work/acme-consumer"
cp -R "$root/examples/acme-consumer/pyproject.toml" "$root/examples/acme-consumer/setup.py" \
  "$root/examples/acme-consumer/src" "$work/acme-consumer/"
rm -rf "$work"/acme-consumer/src/*.egg-info
PATH="$work/venv/bin:$PATH" \
  PKG_CONFIG_PATH=$("$work/venv/bin/python" -c 'import acme_native; print(acme_native.get_pkgconfig_dir())') \
  "$work/venv/bin/pip" wheel $quiet --no-build-isolation --no-deps -w "$work/dist" "$work/acme-consumer"

echo "== repair it"
sharewheel repair "$work"/dist/acme_consumer-*.whl --provider "$work/providers" -w "$work/wheelhouse"
set -- "$work"/wheelhouse/acme_consumer-*.whl
[ $# = 1 ] && [ -f "$1" ] || fail "repair left no single wheel: $*"
consumer=$1
case "$libc-${consumer##*/}" in
  glibc-*-manylinux*.whl | musl-*-musllinux*.whl) ;;
  *) fail "a $libc system's wheel got the tags of ${consumer##*/}" ;;
esac

# Calls into libacme and checks that it was loaded from the provider under $1, not from the prefix.
cat > "$work/call.py" <<'PY'
import sys

import acme_consumer

result = acme_consumer.add(2, 3)
with open("/proc/self/maps") as maps:
    loaded = sorted({line.split()[-1] for line in maps if "libacme" in line})
print(f"acme_consumer.add(2, 3) = {result}, from libacme {acme_consumer.version()}, loaded from", *loaded)
if result != 5 or not loaded or not all(
    path.startswith(sys.argv[1]) and "/acme_native/lib/libacme-sw" in path for path in loaded
):
    sys.exit(f"smoke-test: expected 5 from the provider's libacme under {sys.argv[1]}")
PY

echo "== install both into one venv, call it and check the venv"
"$work/venv/bin/pip" install $quiet --no-index --find-links "$work/providers" "$consumer"
"$work/venv/bin/python" "$work/call.py" "$work/venv/"
sharewheel check --python "$work/venv/bin/python"

if [ "$libc" = glibc ]; then
  echo "== provider in site-a, consumer in site-b, one interpreter"
  "$work/venv/bin/pip" install $quiet --no-deps --target "$work/site-a" "$provider"
  "$work/venv/bin/pip" install $quiet --no-deps --target "$work/site-b" "$consumer"
  "$PYTHON" -m venv --without-pip "$work/run"
  PYTHONPATH="$work/site-b:$work/site-a" "$work/run/bin/python" "$work/call.py" "$work/site-a/"
fi
echo "== smoke test passed ($libc)"
