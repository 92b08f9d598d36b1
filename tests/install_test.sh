#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the build tree into a temporary prefix and builds and runs a small program against it, through the CMake
# package (clattn::clattn) and through pkg-config. Arguments: the build directory and the consumer's source directory.
set -euo pipefail
build_dir=$1
consumer_src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/include/clattn.h"
test -f "$work/prefix/include/clattn_advanced.h"
test -x "$work/prefix/bin/clattn"
# While the version is 0.x the SONAME carries the minor version, and the CMake package accepts that minor only.
version=$(sed -n 's/^#define CLATTN_VERSION_STRING "\(.*\)"/\1/p' "$work/prefix/include/clattn.h")
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
soname=libclattn.so.$major
[ "$major" = 0 ] && soname=libclattn.so.$major.$minor
ls "$work/prefix"/lib*/"$soname" > /dev/null
libdir=$(dirname "$(ls "$work/prefix"/lib*/"$soname")")
# grep reads all of its input here: `grep -q` would stop at the match, and under pipefail the writer's SIGPIPE
# would fail the test at random.
objdump -p "$libdir/$soname" | grep "SONAME *$soname\$" > /dev/null || { echo "$soname does not name itself"; exit 1; }
# The CMake package agrees: it takes its own version and refuses the next minor (0.x) or major one.
next=$major.$((minor + 1))
[ "$major" = 0 ] || next=$((major + 1)).0
mkdir -p "$work/version"
cat > "$work/version/CMakeLists.txt" << EOF
cmake_minimum_required(VERSION 3.20)
project(version_check C)
find_package(clattn $major.$minor REQUIRED)
find_package(clattn $next QUIET)
if(clattn_FOUND)
  message(FATAL_ERROR "clattn $version was accepted for $next")
endif()
EOF
cmake -S "$work/version" -B "$work/version/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/version.log"
# The clattn program is a client of the shared library.
ldd "$work/prefix/bin/clattn" | grep "$soname" > /dev/null || { echo "the clattn program does not link $soname"; exit 1; }

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cmake -S "$consumer_src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
export LD_LIBRARY_PATH="$libdir"
"$work/build/consumer_cmake"
"$work/build/consumer_pkgconfig"
"$work/prefix/bin/clattn" --version
