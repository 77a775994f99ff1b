#!/bin/sh
# Run the whole test suite: creates .venv (or $SHAREWHEEL_TEST_VENV) with sharewheel and the
# test dependencies, then runs pytest. Extra arguments go to pytest.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${SHAREWHEEL_TEST_VENV:-$root/.venv}
# Debian packages the tests need: lld-16 links Mach-O bundles with chained fixups (zig cannot),
# llvm-16's llvm-objdump stands in for Apple's otool so that delocate itself runs here (the macOS
# differential test's oracle), wine64 runs the Windows loader tests (about 30 s to install),
# musl-tools builds musl binaries and brings musl's loader to run them (zig can build them, but
# no musl ld.so to run them).
missing=""
command -v ld64.lld-16 >/dev/null 2>&1 || missing="$missing lld-16"
command -v llvm-objdump-16 >/dev/null 2>&1 || missing="$missing llvm-16"
command -v wine >/dev/null 2>&1 || missing="$missing wine wine64"
command -v musl-gcc >/dev/null 2>&1 || missing="$missing musl-tools"
# MinGW's GNU ld links a consumer against the import libraries pack writes (tests/test_implib.py)
command -v x86_64-w64-mingw32-ld >/dev/null 2>&1 || missing="$missing binutils-mingw-w64-x86-64"
say() { echo "scripts/test.sh: $*" >&2; }

if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages:$missing (a minute or two; wine is the largest)"
    sh "$root/scripts/apt-get-waiting.sh" update -qq
    sh "$root/scripts/apt-get-waiting.sh" install -y -qq $missing
  else
    say "the tests need these Debian packages:$missing"
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
say "installing sharewheel and the test dependencies into $venv (ziglang is about 100 MB)"
"$venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]"
cd "$root"
say "running the tests; the first Windows test builds MinGW's runtime with zig (a few minutes, once per run)"
# one worker per core (SHAREWHEEL_TEST_JOBS to change it); each test module stays on one worker,
# so its fixtures are built once; downloads and compiler caches are shared by the workers
exec "$venv/bin/python" -m pytest -n "${SHAREWHEEL_TEST_JOBS:-auto}" --dist loadfile "$@"
