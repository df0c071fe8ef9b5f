# Which of ggml's x86 CPU backend variants the build makes. llama-cpp-sys-2 (feature
# `dynamic-backends`) turns on GGML_CPU_ALL_VARIANTS, which compiles ggml's CPU backend 14 times
# (x64 … sapphirerapids): on a 2-core machine that is most of a 22-minute release build, for
# modules this machine never loads. Cargo runs CMake with llama-cpp.cmake, which includes this
# file, as CMAKE_PROJECT_INCLUDE (`.cargo/config.toml`), so it runs after `project()` and before
# ggml's own CMakeLists.
#
# CORRAL_CPU_VARIANTS (read here, at configure time):
#   unset or `host`  the variant this CPU scores best on (ggml's own scoring, AMX left out: Corral
#                    never loads it), plus the baseline `x64`;
#   `all`            every variant ggml defines (a release, or a binary copied to other machines);
#   `a,b,…`          these variants, plus `x64`.
#
# Variants left out are still defined (ggml's CMake configures them) but built by no target and
# never installed: the build's other outputs, the run-time loader and the source identity are
# exactly those of the full build. The choice is recorded in corral-cpu-variants.txt in the build
# directory, where corral-engine's build script checks it against CORRAL_CPU_VARIANTS.
include_guard(GLOBAL)

set(_corral_request "$ENV{CORRAL_CPU_VARIANTS}")
if(_corral_request STREQUAL "")
    set(_corral_request "host")
endif()
string(REPLACE "," ";" _corral_request_list "${_corral_request}")

function(_corral_record request built)
    file(WRITE "${CMAKE_BINARY_DIR}/corral-cpu-variants.txt" "request=${request}\nbuilt=${built}\n")
endfunction()

if(_corral_request STREQUAL "all")
    _corral_record("all" "all")
    message(STATUS "corral: building every CPU variant (CORRAL_CPU_VARIANTS=all)")
    return()
endif()

if(_corral_request STREQUAL "host")
    if(CMAKE_CROSSCOMPILING OR NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$"
       OR NOT EXISTS "/proc/cpuinfo")
        # Only x86-64 Linux is read here; elsewhere ggml's own list stands.
        _corral_record("host" "all")
        message(STATUS "corral: building every CPU variant (not a native x86-64 Linux build)")
        return()
    endif()
    file(STRINGS "/proc/cpuinfo" _corral_flags REGEX "^flags" LIMIT_COUNT 1)
    string(REGEX REPLACE "^flags[ \t]*:[ \t]*" "" _corral_flags "${_corral_flags}")
    string(REPLACE " " ";" _corral_flags "${_corral_flags}")

    # ggml's x86 feature names, the /proc/cpuinfo flags each needs, and the score ggml's
    # cpu-feats-x86.cpp gives it (a variant scores 0 if the CPU lacks any of its features).
    set(_corral_feature_FMA "fma")
    set(_corral_feature_F16C "f16c")
    set(_corral_feature_SSE42 "sse4_2")
    set(_corral_feature_BMI2 "bmi2")
    set(_corral_feature_AVX "avx")
    set(_corral_feature_AVX2 "avx2")
    set(_corral_feature_AVX_VNNI "avx_vnni")
    set(_corral_feature_AVX512 "avx512f;avx512cd;avx512vl;avx512dq;avx512bw")
    set(_corral_feature_AVX512_VBMI "avx512vbmi")
    set(_corral_feature_AVX512_BF16 "avx512_bf16")
    set(_corral_feature_AVX512_VNNI "avx512_vnni")
    set(_corral_score_FMA 1)
    set(_corral_score_F16C 2)
    set(_corral_score_SSE42 4)
    set(_corral_score_BMI2 8)
    set(_corral_score_AVX 16)
    set(_corral_score_AVX2 32)
    set(_corral_score_AVX_VNNI 64)
    set(_corral_score_AVX512 128)
    set(_corral_score_AVX512_VBMI 256)
    set(_corral_score_AVX512_BF16 512)
    set(_corral_score_AVX512_VNNI 1024)

    # ggml's x86 variants (ggml/src/CMakeLists.txt), less sapphirerapids (AMX, never loaded).
    set(_corral_variants
        "sse42:SSE42"
        "sandybridge:SSE42,AVX"
        "ivybridge:SSE42,AVX,F16C"
        "piledriver:SSE42,AVX,F16C,FMA"
        "haswell:SSE42,AVX,F16C,FMA,AVX2,BMI2"
        "skylakex:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX512"
        "cannonlake:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX512,AVX512_VBMI"
        "cascadelake:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX512,AVX512_VNNI"
        "icelake:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX512,AVX512_VBMI,AVX512_VNNI"
        "cooperlake:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX512,AVX512_VNNI,AVX512_BF16"
        "zen4:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX512,AVX512_VBMI,AVX512_VNNI,AVX512_BF16"
        "alderlake:SSE42,AVX,F16C,FMA,AVX2,BMI2,AVX_VNNI")
    set(_corral_best "")
    set(_corral_best_score 1)
    foreach(_corral_variant IN LISTS _corral_variants)
        string(REPLACE ":" ";" _corral_parts "${_corral_variant}")
        list(GET _corral_parts 0 _corral_name)
        list(GET _corral_parts 1 _corral_features)
        string(REPLACE "," ";" _corral_features "${_corral_features}")
        set(_corral_score 1)
        foreach(_corral_feature IN LISTS _corral_features)
            foreach(_corral_flag IN LISTS _corral_feature_${_corral_feature})
                if(NOT _corral_flag IN_LIST _corral_flags)
                    set(_corral_score 0)
                endif()
            endforeach()
            if(_corral_score GREATER 0)
                math(EXPR _corral_score "${_corral_score} + ${_corral_score_${_corral_feature}}")
            endif()
        endforeach()
        if(_corral_score GREATER _corral_best_score)
            set(_corral_best "${_corral_name}")
            set(_corral_best_score ${_corral_score})
        endif()
    endforeach()
    set(_corral_request_list ${_corral_best})
endif()

set(_corral_built "x64" ${_corral_request_list})
list(REMOVE_DUPLICATES _corral_built)
list(REMOVE_ITEM _corral_built "")
set_property(GLOBAL PROPERTY CORRAL_CPU_VARIANTS "${_corral_built}")
string(REPLACE ";" "," _corral_built_text "${_corral_built}")
_corral_record("${_corral_request}" "${_corral_built_text}")
message(STATUS "corral: CPU variants built: ${_corral_built_text} (CORRAL_CPU_VARIANTS=${_corral_request}; `all` builds every one)")

# Whether `target` is the module of a CPU variant left out.
function(_corral_left_out target result)
    set(${result} FALSE PARENT_SCOPE)
    if(target MATCHES "^ggml-cpu-([^-]+)$")
        get_property(_built GLOBAL PROPERTY CORRAL_CPU_VARIANTS)
        if(NOT CMAKE_MATCH_1 IN_LIST _built)
            set(${result} TRUE PARENT_SCOPE)
        endif()
    endif()
endfunction()

# ggml makes each variant a module target, then `add_dependencies(ggml <module>)` (so building
# ggml builds it) and `install(TARGETS <module> …)`. For a variant left out, the target is taken
# out of `all` and those two calls are dropped; every other call goes through unchanged (the
# arguments of these two commands in llama.cpp's CMake are plain words, so forwarding ARGV keeps
# them whole).
function(add_dependencies target)
    set(_kept "")
    foreach(_dependency IN LISTS ARGN)
        _corral_left_out("${_dependency}" _out)
        if(_out)
            set_target_properties("${_dependency}" PROPERTIES EXCLUDE_FROM_ALL TRUE)
        else()
            list(APPEND _kept "${_dependency}")
        endif()
    endforeach()
    if(_kept)
        _add_dependencies("${target}" ${_kept})
    endif()
endfunction()

function(install)
    if(ARGC GREATER 1 AND ARGV0 STREQUAL "TARGETS")
        _corral_left_out("${ARGV1}" _out)
        if(_out)
            return()
        endif()
    endif()
    _install(${ARGV})
endfunction()
