# What Corral adds to llama.cpp's CMake configuration. Cargo passes this file to CMake as
# CMAKE_PROJECT_INCLUDE (`.cargo/config.toml`), so it runs after llama.cpp's `project()`:
#   - cpu-variants.cmake: which of ggml's CPU backend variants are built;
#   - compat/compat.cmake: the model loader's hooks for GGUFs published for Ollama's engine;
#   - ggml's RPC backend, a module like the others (libggml-rpc.so): `corral rpc` serves this
#     host's devices through it and runners use other hosts' (CORRAL_RPC_SERVERS). TCP only: the
#     RDMA transport would depend on whether libibverbs happened to be installed at build time.
# A change here rebuilds llama.cpp through compat.cmake's record (corral-engine's build script).
include_guard(GLOBAL)
set(GGML_RPC ON CACHE BOOL "corral: ggml's RPC backend module" FORCE)
set(GGML_RPC_RDMA OFF CACHE BOOL "corral: the RPC backend over TCP only" FORCE)
include("${CMAKE_CURRENT_LIST_DIR}/cpu-variants.cmake")
include("${CMAKE_CURRENT_LIST_DIR}/compat/compat.cmake")
