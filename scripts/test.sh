#!/bin/sh
# Run the whole test suite: creates .venv (or $SHAREWHEEL_TEST_VENV) with sharewheel and the
# test dependencies, then runs pytest. Extra arguments go to pytest.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${SHAREWHEEL_TEST_VENV:-$root/.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
