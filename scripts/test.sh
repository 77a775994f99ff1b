#!/bin/sh
# Run the whole test suite: creates .venv (or $SHAREWHEEL_TEST_VENV) with sharewheel and the
# test dependencies, then runs pytest. Extra arguments go to pytest.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${SHAREWHEEL_TEST_VENV:-$root/.venv}
# The Mach-O tests link MH_BUNDLEs with chained fixups with Debian's lld-16 (zig cannot).
if ! command -v ld64.lld-16 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lld-16 >/dev/null
  else
    echo "scripts/test.sh: the Mach-O tests need ld64.lld-16 (Debian: apt-get install lld-16)" >&2
  fi
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
