#!/usr/bin/env bash
# Installs everything framex needs on Debian 12 (run as root) and extracts the
# msgpack-cxx headers into a build-local prefix. Idempotent: a second run only
# checks, so it costs a second or two.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake ninja-build ccache clang libclang-rt-14-dev
  libboost1.81-all-dev libssl-dev libspdlog-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-msgpack libgrpc++-dev curl openssl wrk chromium
  etcd-server etcd-client iproute2 neovim
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# msgpack-cxx's Debian package depends on Boost 1.74, which cannot sit beside
# 1.81, so its headers are unpacked into build/deps instead of installed.
deps="$here/build/deps"
if [ ! -f "$deps/msgpack/include/msgpack.hpp" ]; then
  echo "setup: extracting msgpack-cxx headers into $deps/msgpack"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download libmsgpack-cxx-dev >/dev/null 2>&1 \
     || { apt-get update -qq && apt-get download libmsgpack-cxx-dev >/dev/null; })
  mkdir -p "$deps/msgpack"
  dpkg-deb -x "$tmp"/libmsgpack-cxx-dev_*.deb "$tmp/x"
  cp -r "$tmp/x/usr/include" "$deps/msgpack/"
  rm -rf "$tmp"
fi
