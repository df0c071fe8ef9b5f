#!/usr/bin/env bash
# Prints a directory of Vulkan headers new enough for the llama.cpp Corral builds (its Vulkan
# backend uses VK_EXT_layer_settings and other recent structures), fetching them once.
#
# Debian 12's libvulkan-dev (1.3.239) is too old. The headers come from Debian 13's libvulkan-dev
# package, pinned by its sha256 and unpacked (not installed) into Corral's cache: the build uses
# its include directory and links the system's Vulkan loader, which resolves newer entry points at
# run time. A system whose own headers are at least as new gets its own directory.
#
#   VULKAN_INCLUDE_DIR=$(scripts/vulkan-headers.sh)
set -euo pipefail

version=1.4.309.0-1
sha256=8d329d465e16168afff58b1bd0dd6db46aac2cc3f56054a481b25a04e90b345a
url=https://deb.debian.org/debian/pool/main/v/vulkan-loader/libvulkan-dev_${version}_amd64.deb
want=309 # VK_HEADER_VERSION of $version

header_version() { awk '/#define VK_HEADER_VERSION /{ print $3; exit }' "$1/vulkan/vulkan_core.h" 2>/dev/null; }

system=/usr/include
if [ "$(header_version "$system" || true)" -ge "$want" ] 2>/dev/null; then
  echo "$system"
  exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/corral/vulkan-headers-$version
if [ "$(header_version "$cache/usr/include" || true)" != "$want" ]; then
  [ "$(uname -m)" = x86_64 ] || { echo "no pinned Vulkan headers for $(uname -m); install Vulkan headers >= 1.4.$want" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "fetching Vulkan headers $version" >&2
  curl -fsSL --retry 3 -o "$work/headers.deb" "$url"
  echo "$sha256  $work/headers.deb" | sha256sum -c --quiet
  dpkg-deb -x "$work/headers.deb" "$work/root"
  rm -rf "$cache"
  mkdir -p "$cache/usr"
  mv "$work/root/usr/include" "$cache/usr/include"
fi
echo "$cache/usr/include"
