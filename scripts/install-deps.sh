#!/usr/bin/env bash
# Installs the Debian packages nosa-serve builds and tests with. Idempotent; needs root (or
# sudo). The CUDA toolkit is not a Debian package here: when /usr/local/cuda exists it is
# used, otherwise the CPU backend alone is built.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libnuma-dev libcjson-dev
      libmicrohttpd-dev zlib1g-dev gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
