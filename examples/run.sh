#!/bin/sh
# The main job on the bundled example, from nothing but Python 3 and gcc:
#   1. build libacme 3.1.4 into a prefix and pack it as the native-lib wheel acme-native,
#   2. build the acme-consumer extension against the installed provider (flags from pkg-config),
#   3. repair it with sharewheel (links to acme-native instead of vendoring libacme),
#   4. install provider and consumer into two different directories and call into libacme.
# Usage: sh examples/run.sh   (work files go to build/example, or $WORK)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK:-$root/build/example}
rm -rf "$work"
mkdir -p "$work"
quiet="-q --disable-pip-version-check"

echo "== a venv with sharewheel and a C extension build toolchain"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install $quiet "$root" setuptools wheel pkgconf
export PATH="$work/venv/bin:$PATH"

echo "== build libacme 3.1.4 and pack it"
sh "$root/examples/acme/build.sh" "$work/prefix" 3.1.4
sharewheel pack "$work/prefix" --name acme-native --version 3.1.4 --abi major -w "$work/providers"

echo "== build acme-consumer against the installed provider"
pip install $quiet "$work"/providers/acme_native-*.whl
PKG_CONFIG_PATH=$(python -c 'import acme_native; print(acme_native.get_pkgconfig_dir())') \
  pip wheel $quiet --no-build-isolation --no-deps -w "$work/dist" "$root/examples/acme-consumer"

echo "== repair it"
sharewheel repair "$work"/dist/*.whl --provider "$work/providers" -w "$work/wheelhouse"

echo "== install provider into site-a, consumer into site-b, and call it from a clean interpreter"
pip install $quiet --target "$work/site-a" "$work"/providers/*.whl
pip install $quiet --no-deps --target "$work/site-b" "$work"/wheelhouse/*.whl
python3 -m venv --without-pip "$work/run"
PYTHONPATH="$work/site-b:$work/site-a" "$work/run/bin/python" -c '
import acme_consumer
loaded = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libacme" in line})
print(f"acme_consumer.add(2, 3) = {acme_consumer.add(2, 3)}, from libacme {acme_consumer.version()}")
print("libacme loaded from:", *loaded)
'
