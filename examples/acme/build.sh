#!/bin/sh
# Build and install libacme VERSION into PREFIX the way a C build leaves it:
# lib/libacme.so.VERSION (soname libacme.so.MAJOR) with its two symlinks, include/acme.h and
# lib/pkgconfig/acme.pc with an absolute prefix.   Usage: build.sh PREFIX VERSION
set -eu
prefix=$1 version=$2 major=${2%%.*}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
${CC:-gcc} -O2 -fPIC -shared -Wl,-soname,libacme.so.$major \
  -DACME_MAJOR="$major" -DACME_VERSION="\"$version\"" \
  -o "$prefix/lib/libacme.so.$version" "$here/acme.c"
ln -sf "libacme.so.$version" "$prefix/lib/libacme.so.$major"
ln -sf "libacme.so.$major" "$prefix/lib/libacme.so"
cp "$here/acme.h" "$prefix/include/"
cat > "$prefix/lib/pkgconfig/acme.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: acme
Description: The example library of sharewheel
Version: $version
Libs: -L\${libdir} -lacme
Cflags: -I\${includedir}
PC
