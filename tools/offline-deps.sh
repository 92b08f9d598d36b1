#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Carries clattn's build and test dependencies to a machine that has a GPU driver but no package registry (no
# OpenCL ICD loader, no CLBlast, no cJSON, no cmocka), as Debian packages unpacked into a private prefix, no root.
#
#   tools/offline-deps.sh download DIR [--with-build-tools]
#       (on a Debian/Ubuntu machine of the same release and architecture as the target, with a registry)
#       `apt-get download`s the .deb files of the libraries, their headers and their dependency closure into DIR,
#       leaving out the base system (the Essential packages with their closure, the C++ runtime), and writes
#       DIR/packages.txt.
#       --with-build-tools adds cmake and pkg-config, for a target that lacks them.
#   tools/offline-deps.sh unpack DIR PREFIX [--icd-library LIB]
#       (on the target) `dpkg -x`s every .deb of DIR into PREFIX, repoints the packages' CMake and pkg-config files
#       from /usr to PREFIX/usr, writes PREFIX/etc/OpenCL/vendors/clattn.icd naming LIB (default
#       libnvidia-opencl.so.1, the NVIDIA driver's OpenCL library) and prints the environment to source:
#         eval "$(tools/offline-deps.sh unpack DIR PREFIX)"
#       then configure and test as usual: cmake -S . -B build && cmake --build build && ctest --test-dir build
set -euo pipefail

die() {
    echo "offline-deps.sh: $*" >&2
    exit 2
}

# What the build and the tests need: the OpenCL ICD loader and its headers, CLBlast, cJSON, cmocka.
ROOTS=(ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers libclblast1 libclblast-dev libcjson1 libcjson-dev
    libcmocka0 libcmocka-dev)
BUILD_TOOLS=(cmake cmake-data pkgconf)
# Left out as the base system: the Essential packages and their whole closure (every Debian-family system has
# them, and a copy from here on LD_LIBRARY_PATH would only shadow the target's own), the C++ runtime that CLBlast
# and any GPU driver need, and names that stand for other packages (virtual ones, printed as <name>).
base_packages() {
    local essential
    essential=$(apt-cache dumpavail | awk '/^Package: /{p=$2} /^Essential: yes/{print p}' | sort -u)
    # shellcheck disable=SC2086 # one word per package
    {
        closure_of $essential
        closure_of libstdc++6 libgcc-s1
    } | sort -u
}

# The closure through Depends and Pre-Depends (not Recommends or Suggests), every alternative included so that
# whichever one the target's dpkg would pick is there.
closure_of() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
        --no-enhances "$@" | grep -v '^ ' | grep -v '^<' | sort -u
}

download() {
    local dir="$1"
    shift
    local roots=("${ROOTS[@]}")
    for arg in "$@"; do
        case "$arg" in
        --with-build-tools) roots+=("${BUILD_TOOLS[@]}") ;;
        *) die "download: unknown option $arg" ;;
        esac
    done
    command -v apt-get > /dev/null || die "download needs apt-get (a Debian or Ubuntu machine with a registry)"
    mkdir -p "$dir"
    local -a closure
    mapfile -t closure < <(comm -23 <(closure_of "${roots[@]}") <(base_packages))
    [ ${#closure[@]} -gt 0 ] || die "apt-cache found none of: ${roots[*]}"
    # (apt warns when its _apt user cannot write DIR and downloads as the caller instead: not a failure.)
    local log p
    log=$(cd "$dir" && apt-get download "${closure[@]}" 2>&1 > /dev/null) || true
    printf '%s\n' "$log" | grep -v -e '^W: Download is performed unsandboxed' -e '^$' >&2 || true
    for p in "${closure[@]}"; do
        compgen -G "$dir/${p}_*.deb" > /dev/null || die "apt-get download did not fetch $p"
    done
    printf '%s\n' "${closure[@]}" > "$dir/packages.txt"
    echo "downloaded $(wc -l < "$dir/packages.txt") packages into $dir:" >&2
    find "$dir" -maxdepth 1 -name '*.deb' -printf '  %f\n' | sort >&2
}

unpack() {
    local dir="$1" prefix="$2"
    shift 2
    local icd_lib=libnvidia-opencl.so.1
    while [ $# -gt 0 ]; do
        case "$1" in
        --icd-library)
            [ $# -ge 2 ] || die "--icd-library needs a library name or path"
            icd_lib="$2"
            shift 2
            ;;
        *) die "unpack: unknown option $1" ;;
        esac
    done
    command -v dpkg > /dev/null || die "unpack needs dpkg (dpkg -x)"
    compgen -G "$dir/*.deb" > /dev/null || die "no .deb files in $dir"
    mkdir -p "$prefix"
    prefix=$(cd "$prefix" && pwd)
    local deb
    for deb in "$dir"/*.deb; do dpkg -x "$deb" "$prefix"; done
    local usr="$prefix/usr"
    # The multiarch directory the loader went into (x86_64-linux-gnu, aarch64-linux-gnu, ...).
    local libopencl
    libopencl=$(find "$usr/lib" -name 'libOpenCL.so.1' | head -n 1)
    [ -n "$libopencl" ] || die "no libOpenCL.so.1 among the unpacked packages"
    local libdir
    libdir=$(dirname "$libopencl")
    # Debian's CMake and pkg-config files name /usr outright (cJSON's include directory, CLBlast's link to
    # libOpenCL.so, every .pc prefix): point them at the prefix, or CMake would look for files the target lacks.
    local f
    while IFS= read -r -d '' f; do
        sed -i -e "s|\"/usr/|\"$usr/|g" -e "s|\"/usr\"|\"$usr\"|g" -e "s|^prefix=/usr\$|prefix=$usr|" \
            -e "s|=/usr/|=$usr/|g" -e "s|;/usr/|;$usr/|g" -e "s|-L/usr/|-L$usr/|g" -e "s|-I/usr/|-I$usr/|g" "$f"
    done < <(find "$usr/lib" "$usr/share" \( -path '*/cmake/*' -name '*.cmake' -o -name '*.pc' \) -print0 \
        2> /dev/null)
    local vendors="$prefix/etc/OpenCL/vendors"
    mkdir -p "$vendors"
    printf '%s\n' "$icd_lib" > "$vendors/clattn.icd"
    echo "unpacked $(find "$dir" -maxdepth 1 -name '*.deb' | wc -l) packages into $prefix; ICD $vendors/clattn.icd -> $icd_lib" >&2
    # For `eval`: CMake finds the packages under the prefix before the system's, pkg-config reads its .pc
    # files, programs load its libraries, and the ICD loader (ocl-icd reads OCL_ICD_VENDORS, Khronos' loader
    # OPENCL_VENDOR_PATH) takes the vendors directory instead of /etc/OpenCL/vendors.
    cat << EOF
export CMAKE_PREFIX_PATH="$usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="$libdir/pkgconfig:$usr/share/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$usr/bin:\$PATH"
export OCL_ICD_VENDORS="$vendors"
export OPENCL_VENDOR_PATH="$vendors"
EOF
}

case "${1:-}" in
download)
    [ $# -ge 2 ] || die "usage: $0 download DIR [--with-build-tools]"
    shift
    download "$@"
    ;;
unpack)
    [ $# -ge 3 ] || die "usage: $0 unpack DIR PREFIX [--icd-library LIB]"
    shift
    unpack "$@"
    ;;
*)
    awk 'NR > 2 && !/^#/ { exit } NR > 2 { sub(/^# ?/, ""); print }' "$0"
    [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] || exit 2
    ;;
esac
