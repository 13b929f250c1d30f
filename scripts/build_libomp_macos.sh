#!/usr/bin/env bash
# Build LLVM's OpenMP runtime (libomp) for the macOS wheels.
#
# cibuildwheel runs this as `before-all` on macOS. Apple's clang has no OpenMP
# runtime of its own, and Homebrew's libomp is built for the runner's macOS
# release, which delocate would refuse to bundle into a wheel meant for older
# systems. So libomp is built here from LLVM's release sources with the wheels'
# MACOSX_DEPLOYMENT_TARGET, installed under CCONV_LIBOMP_PREFIX, found by the
# build through CPPFLAGS/LDFLAGS (see [tool.cibuildwheel.macos] in
# pyproject.toml) and copied into each wheel by delocate.
#
# Environment: MACOSX_DEPLOYMENT_TARGET (required), CCONV_LIBOMP_PREFIX
# (default /tmp/cconv-libomp), CCONV_LIBOMP_ARCH (default: this machine's).
set -euo pipefail

LLVM_VERSION=21.1.8
RELEASE_URL="https://github.com/llvm/llvm-project/releases/download/llvmorg-${LLVM_VERSION}"
OPENMP_ARCHIVE="openmp-${LLVM_VERSION}.src.tar.xz"
OPENMP_SHA256=856b023748b41ac7b2c83fd8e9f765ff48a4df2fe6777d2811ef7c7ed8f2f977
# The runtime's CMake files include LLVM's shared CMake modules from ../cmake.
CMAKE_ARCHIVE="cmake-${LLVM_VERSION}.src.tar.xz"
CMAKE_SHA256=85735f20fd8c81ecb0a09abb0c267018475420e93b65050cc5b7634eab744de9

prefix="${CCONV_LIBOMP_PREFIX:-/tmp/cconv-libomp}"
arch="${CCONV_LIBOMP_ARCH:-$(uname -m)}"
: "${MACOSX_DEPLOYMENT_TARGET:?must be the minimum macOS version of the wheels}"

work="$(mktemp -d "${TMPDIR:-/tmp}/cconv-libomp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch ARCHIVE SHA256: download into $work and check its SHA-256
    curl --fail --silent --show-error --location --retry 5 \
        --output "$work/$1" "$RELEASE_URL/$1"
    echo "$2  $work/$1" | shasum -a 256 --check
}
fetch "$OPENMP_ARCHIVE" "$OPENMP_SHA256"
fetch "$CMAKE_ARCHIVE" "$CMAKE_SHA256"
tar -xf "$work/$OPENMP_ARCHIVE" -C "$work"
tar -xf "$work/$CMAKE_ARCHIVE" -C "$work"
mv "$work/cmake-${LLVM_VERSION}.src" "$work/cmake"

cmake -S "$work/openmp-${LLVM_VERSION}.src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_INSTALL_NAME_DIR="$prefix/lib" \
    -DCMAKE_OSX_ARCHITECTURES="$arch" \
    -DCMAKE_OSX_DEPLOYMENT_TARGET="$MACOSX_DEPLOYMENT_TARGET" \
    -DLIBOMP_ENABLE_SHARED=ON \
    -DLIBOMP_INSTALL_ALIASES=OFF \
    -DLIBOMP_FORTRAN_MODULES=OFF \
    -DLIBOMP_OMPT_SUPPORT=OFF
cmake --build "$work/build" --parallel 3
cmake --install "$work/build"

# The wheels redistribute libomp: ship its licence with them.
mkdir -p cconv/licenses
cp "$work/openmp-${LLVM_VERSION}.src/LICENSE.TXT" cconv/licenses/LLVM-OpenMP-LICENSE.txt

test -f "$prefix/include/omp.h"
test -f "$prefix/lib/libomp.dylib"
otool -L "$prefix/lib/libomp.dylib"
