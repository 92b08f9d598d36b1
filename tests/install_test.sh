#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds and runs a small program against it, through the CMake
# package (clattn::clattn) and through pkg-config. Arguments: the build directory and the consumer's source directory.
set -euo pipefail
build_dir=$1
consumer_src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/include/clattn.h"
test -x "$work/prefix/bin/clattn"
ls "$work/prefix"/lib*/libclattn.so.0 > /dev/null
libdir=$(dirname "$(ls "$work/prefix"/lib*/libclattn.so.0)")
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cmake -S "$consumer_src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
export LD_LIBRARY_PATH="$libdir"
"$work/build/consumer_cmake"
"$work/build/consumer_pkgconfig"
"$work/prefix/bin/clattn" --version
