# What Corral adds to llama.cpp's CMake configuration. Cargo passes this file to CMake as
# CMAKE_PROJECT_INCLUDE (`.cargo/config.toml`), so it runs after llama.cpp's `project()`:
#   - cpu-variants.cmake: which of ggml's CPU backend variants are built;
#   - compat/compat.cmake: the model loader's hooks for GGUFs published for Ollama's engine.
include_guard(GLOBAL)
include("${CMAKE_CURRENT_LIST_DIR}/cpu-variants.cmake")
include("${CMAKE_CURRENT_LIST_DIR}/compat/compat.cmake")
