# Builds Corral's GGUF translation hooks into llama.cpp's `llama` library (see corral-compat.h).
#
# llama.cpp's sources stay untouched (they live in cargo's registry): at the end of configuring,
# this script writes a copy of src/llama-model-loader.cpp with the hooks' calls added, and builds
# the `llama` target from that copy plus corral-compat.cpp:
#   - after the main file's metadata is read: corral_compat::translate(...) (which may turn mmap
#     off);
#   - in each loop that indexes a file's tensors: `if (corral_compat::skip(...)) continue;`
#   - before a tensor's data is read (whole, or a range of it): corral_compat::load / load_range.
# Each insertion point is found by its exact text; when a llama.cpp update moves one, configuring
# stops with the text it looked for, instead of building a loader without the hook.
#
# corral-compat-sources.txt in the build directory records a digest of the files here and of
# ../llama-cpp.cmake (Corral's other settings of llama.cpp's build), which corral-engine's build
# script compares with the files it sees: cargo does not rerun llama-cpp-sys-2's build when only
# these files change, so the engine's build script runs CMake's build itself when they differ.
include_guard(GLOBAL)

set(_corral_compat_dir "${CMAKE_CURRENT_LIST_DIR}")

function(_corral_compat_hook)
    if(NOT TARGET llama)
        message(FATAL_ERROR "corral compat: llama.cpp defines no `llama` target")
    endif()
    get_target_property(_src_dir llama SOURCE_DIR)
    set(_in "${_src_dir}/llama-model-loader.cpp")
    file(READ "${_in}" _text)

    # 1. The translation, once the main file's architecture is known and before the loader
    #    derives its key names from it.
    set(_anchor "get_key(llm_kv(LLM_KV_GENERAL_ARCHITECTURE), arch_name, false);\n        llm_kv = LLM_KV(llm_arch_from_string(arch_name));\n\n        files.emplace_back(new llama_file(fname.c_str()")
    set(_hooked "get_key(llm_kv(LLM_KV_GENERAL_ARCHITECTURE), arch_name, false);\n        if (corral_compat::translate(this, fname, metadata, ctx, arch_name)) { this->use_mmap = false; }\n        llm_kv = LLM_KV(llm_arch_from_string(arch_name));\n\n        files.emplace_back(new llama_file(fname.c_str()")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    # 2. Hidden tensors never enter the weights index (nor its counts).
    set(_anchor "std::string tensor_name = std::string(cur->name);")
    set(_hooked "std::string tensor_name = std::string(cur->name); if (corral_compat::skip(this, tensor_name.c_str())) { continue; }")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 0)

    # 3. Tensors assembled from other byte ranges of the file: read by the hooks, whole or (for the
    #    quantizer) in pieces.
    set(_anchor "        size_t n_size = ggml_nbytes(cur);\n\n        const bool from_mapping")
    set(_hooked "        size_t n_size = ggml_nbytes(cur);\n        if (corral_compat::load(this, cur, n_size)) { size_done += n_size; continue; }\n\n        const bool from_mapping")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)
    set(_anchor "    GGML_ASSERT(offs + size <= ggml_nbytes(w.tensor));\n")
    set(_hooked "    GGML_ASSERT(offs + size <= ggml_nbytes(w.tensor));\n    if (corral_compat::load_range(this, w.tensor, offs, size, buf)) { return buf; }\n")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    set(_anchor "#include \"llama-model-loader.h\"\n")
    set(_hooked "#include \"llama-model-loader.h\"\n#include \"corral-compat.h\"\n")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    _corral_compat_build_copy(llama "llama-model-loader.cpp" "${_text}" "${_corral_compat_dir}/corral-compat.cpp")
    # The copy includes llama.cpp's private headers (src/ is on the target's include path) and ours.
    target_include_directories(llama PRIVATE "${_corral_compat_dir}")
    # Any change here reconfigures, which writes the digest record below again.
    set_property(DIRECTORY "${CMAKE_SOURCE_DIR}" APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
        "${_in}" "${_corral_compat_dir}/compat.cmake" "${_corral_compat_dir}/corral-compat.cpp"
        "${_corral_compat_dir}/corral-compat.h" "${_corral_compat_dir}/../llama-cpp.cmake")

    _corral_compat_hook_clip()

    file(SHA256 "${_corral_compat_dir}/corral-compat.cpp" _cpp)
    file(SHA256 "${_corral_compat_dir}/corral-compat.h" _h)
    file(SHA256 "${_corral_compat_dir}/compat.cmake" _cmake)
    file(SHA256 "${_corral_compat_dir}/../llama-cpp.cmake" _project)
    file(WRITE "${CMAKE_BINARY_DIR}/corral-compat-sources.txt" "${_cpp} ${_h} ${_cmake} ${_project}\n")
    message(STATUS "corral: llama.cpp's model loader carries the GGUF translation hooks")
endfunction()

# The projector loader (tools/mtmd/clip.cpp, in the `mtmd` target when llama-cpp-sys-2 builds it):
# a copy with `translate_clip` once a projector file's metadata is read and `load` before each
# tensor's data is read, so that a model file Ollama published with its vision tower inside can
# serve as its own projector; and `watch_encode` before each graph it computes, so that an encode
# can be stopped. The hook functions live in `llama`, which `mtmd` links.
function(_corral_compat_hook_clip)
    if(NOT TARGET mtmd)
        return()
    endif()
    get_target_property(_mtmd_dir mtmd SOURCE_DIR)
    set(_in "${_mtmd_dir}/clip.cpp")
    file(READ "${_in}" _text)

    set(_anchor "#include \"gguf.h\"\n")
    set(_hooked "#include \"gguf.h\"\n#include \"corral-compat.h\"\n")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    set(_anchor "        ctx_meta.reset(meta);\n\n        const int n_tensors = gguf_get_n_tensors(ctx_gguf.get());")
    set(_hooked "        ctx_meta.reset(meta);\n        corral_compat::translate_clip(this, fname, ctx_gguf.get(), meta);\n\n        const int n_tensors = gguf_get_n_tensors(ctx_gguf.get());")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    set(_anchor "                    const size_t offset = it_off->second;\n                    fin.seekg(offset, std::ios::beg);")
    set(_hooked "                    const size_t offset = it_off->second;\n                    if (corral_compat::load(this, cur, ggml_nbytes(cur))) { data_loaded += ggml_nbytes(cur); continue; }\n                    fin.seekg(offset, std::ios::beg);")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    set(_anchor "    auto status = ggml_backend_sched_graph_compute(ctx->sched.get(), gf);")
    set(_hooked "    corral_compat::watch_encode(ctx->backend_cpu);\n    auto status = ggml_backend_sched_graph_compute(ctx->sched.get(), gf);")
    _corral_compat_replace(_text "${_anchor}" "${_hooked}" 1)

    _corral_compat_build_copy(mtmd "clip.cpp" "${_text}" "")
    # The copy finds clip.cpp's own headers through the target's include path (its source
    # directory), and ours here.
    target_include_directories(mtmd PRIVATE "${_corral_compat_dir}" "${_mtmd_dir}")
    set_property(DIRECTORY "${CMAKE_SOURCE_DIR}" APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_in}")
    message(STATUS "corral: llama.cpp's projector loader carries the GGUF translation hooks")
endfunction()

# _corral_compat_build_copy(TARGET FILE TEXT EXTRA): TARGET builds TEXT, written to the build
# directory as FILE, instead of its own FILE, plus the EXTRA source (if any). The copy is written
# only when it differs, so a reconfigure does not rebuild it.
function(_corral_compat_build_copy target file text extra)
    set(_out_dir "${CMAKE_BINARY_DIR}/corral-compat")
    file(MAKE_DIRECTORY "${_out_dir}")
    file(WRITE "${_out_dir}/${file}.new" "${text}")
    file(COPY_FILE "${_out_dir}/${file}.new" "${_out_dir}/${file}" ONLY_IF_DIFFERENT)
    get_target_property(_sources ${target} SOURCES)
    list(FIND _sources "${file}" _at)
    if(_at EQUAL -1)
        message(FATAL_ERROR "corral compat: the `${target}` target does not build ${file}")
    endif()
    list(REMOVE_AT _sources ${_at})
    list(APPEND _sources "${_out_dir}/${file}" ${extra})
    set_target_properties(${target} PROPERTIES SOURCES "${_sources}")
endfunction()

# _corral_compat_replace(VAR ANCHOR REPLACEMENT EXACTLY_ONE): replaces ANCHOR in VAR; stops when it
# is missing (or, with EXACTLY_ONE, found more than once).
function(_corral_compat_replace var anchor replacement exactly_one)
    string(FIND "${${var}}" "${anchor}" _first)
    string(FIND "${${var}}" "${anchor}" _last REVERSE)
    if(_first EQUAL -1)
        message(FATAL_ERROR "corral compat: llama.cpp's source no longer contains:\n${anchor}\n"
                            "update crates/corral-engine/compat/compat.cmake for this llama.cpp")
    endif()
    if(exactly_one AND NOT _first EQUAL _last)
        message(FATAL_ERROR "corral compat: llama.cpp's source contains this more than once:\n${anchor}")
    endif()
    string(REPLACE "${anchor}" "${replacement}" _text "${${var}}")
    set(${var} "${_text}" PARENT_SCOPE)
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _corral_compat_hook)
