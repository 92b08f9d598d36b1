#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The build and test dependencies for a machine that has a GPU driver and nothing else (no package registry, no
# OpenCL ICD loader, no CLBlast), in two steps:
#   tools/offline-deps.sh download DIR          here, with a registry: the Debian packages (.deb) into DIR
#   tools/offline-deps.sh unpack DIR PREFIX     there: unpacks them into PREFIX (no root), makes their pkg-config and
#                                               CMake files point into PREFIX, writes an ICD file for NVIDIA's
#                                               driver (libnvidia-opencl.so.1) and prints the environment to use
# The machines should run the same Debian release (the libraries are that release's builds).
set -euo pipefail

# The ICD loader and headers, CLBlast, cJSON and cmocka, with their libraries' own packages.
packages=(
  ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers
  libclblast1 libclblast-dev
  libcjson1 libcjson-dev
  libcmocka0 libcmocka-dev
)

usage() {
  echo "usage: $0 download DIR | unpack DIR PREFIX" >&2
  exit 2
}

[ $# -ge 2 ] || usage
case "$1" in
download)
  dir=$2
  mkdir -p "$dir"
  cd "$dir"
  # apt-get download fetches exactly the named packages, without installing anything.
  apt-get download "${packages[@]}"
  echo "downloaded $(ls -1 ./*.deb | wc -l) packages into $dir; copy it to the GPU machine and run: $0 unpack DIR PREFIX"
  ;;
unpack)
  [ $# -eq 3 ] || usage
  dir=$(cd "$2" && pwd)
  mkdir -p "$3"
  prefix=$(cd "$3" && pwd)
  shopt -s nullglob
  debs=("$dir"/*.deb)
  [ ${#debs[@]} -gt 0 ] || { echo "$0: no .deb files in $dir" >&2; exit 1; }
  for deb in "${debs[@]}"; do dpkg -x "$deb" "$prefix"; done
  # pkg-config and CMake package files name /usr; point them into the prefix.
  while IFS= read -r -d '' f; do
    sed -i "s|=/usr|=$prefix/usr|g; s|\"/usr/|\"$prefix/usr/|g; s| /usr/| $prefix/usr/|g" "$f"
  done < <(find "$prefix/usr" \( -name '*.pc' -o -name '*.cmake' \) -print0)
  # The loader's symlink for linking (the -dev package's) may point to an absolute path.
  libdir=$prefix/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
  for link in "$libdir"/*.so; do
    target=$(readlink "$link" || true)
    case "$target" in /*) ln -sf "$(basename "$target")" "$link" ;; esac
  done
  mkdir -p "$prefix/etc/OpenCL/vendors"
  echo "libnvidia-opencl.so.1" > "$prefix/etc/OpenCL/vendors/nvidia.icd"
  cat <<EOF
# clattn's dependencies are in $prefix. For the build and the tests:
export CMAKE_PREFIX_PATH=$prefix/usr
export PKG_CONFIG_PATH=$libdir/pkgconfig:$prefix/usr/share/pkgconfig
export CPATH=$prefix/usr/include
export LIBRARY_PATH=$libdir
export LD_LIBRARY_PATH=$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export OCL_ICD_VENDORS=$prefix/etc/OpenCL/vendors
# then: cmake -S . -B build -DCLATTN_WERROR=ON && cmake --build build -j && (cd build && ctest -L device)
EOF
  ;;
*) usage ;;
esac
