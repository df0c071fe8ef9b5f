// Corral's load-time translation of GGUF files published for Ollama's own engine.
//
// The translation itself (which keys change, which tensors are renamed, reshaped or hidden, and
// which are assembled from other byte ranges of the file) is computed in Rust from the file's
// header (crates/corral-compat) and handed over through the C functions below before the model
// is loaded. llama.cpp's model loader calls the hooks in namespace corral_compat (inserted into a
// copy of src/llama-model-loader.cpp by compat.cmake): `translate` once the file's metadata is
// read, `skip` for every tensor it indexes, `load` / `load_range` before it reads a tensor's
// data. A file with no plan installed for its path is loaded exactly as before.
//
// The multimodal projector loader (tools/mtmd/clip.cpp, also copied with hooks by compat.cmake)
// has plans of its own, installed with corral_compat_install_clip: a published model file is
// then read as its own projector (`translate_clip` after its metadata is read, `load` before a
// tensor's data is read). One more hook there is for run time: `watch_encode` before each graph
// the projector computes, so that an encode nobody waits for any more can be stopped.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <string>

struct gguf_context;
struct ggml_context;
struct ggml_tensor;
struct ggml_backend;

namespace corral_compat {

// Applies the plan installed for `fname`, if any, to the loader's metadata and tensor index, and
// updates `arch_name` when the plan changes the architecture. Throws std::runtime_error when the
// plan does not fit the file (a tensor it names is missing): the load then fails with that text.
// Returns whether the file must not be memory-mapped (some tensor is assembled at load).
bool translate(const void * loader, const std::string & fname, gguf_context * meta, ggml_context * ctx,
               std::string & arch_name);

// The same for the projector loader (clip.cpp), with the plans installed for projectors. Throws
// std::runtime_error when the plan does not fit the file.
void translate_clip(const void * loader, const std::string & fname, gguf_context * meta, ggml_context * ctx);

// Whether the loader must leave this tensor out of its index (an embedded vision, audio or MTP
// tensor the text model does not use).
bool skip(const void * loader, const char * tensor_name);

// Fills `cur` (its `n_size` bytes) when the plan assembles it from byte ranges of the file,
// converts it from the F16 data the file holds, or fills it with a row of another tensor; false
// when the loader reads it itself. Throws std::runtime_error when the file cannot be read.
bool load(const void * loader, ggml_tensor * cur, size_t n_size);

// The same for `size` bytes from `offs` of the tensor into `buf` (llama.cpp's quantizer reads
// tensors in pieces).
bool load_range(const void * loader, const ggml_tensor * cur, size_t offs, size_t size, void * buf);

// Run-time, not load-time: before each graph the projector computes (clip.cpp's encode), makes
// its CPU backend stop between two nodes once the flag the calling thread set with
// corral_compat_watch_encodes is non-zero (the encode then fails). Backends other than the CPU's
// have no such callback and finish their part.
void watch_encode(ggml_backend * cpu);

} // namespace corral_compat

extern "C" {
#endif

typedef struct corral_compat_plan corral_compat_plan;

// A new, empty plan for the file at `path` (as it will be passed to llama.cpp).
corral_compat_plan * corral_compat_begin(const char * path);
// Sets a key to a scalar (n == 1, is_array == 0) or an array of `n` values of GGUF type
// `gguf_type` (any numeric type or bool), stored contiguously at `data`.
void corral_compat_set(corral_compat_plan * plan, const char * key, int32_t gguf_type, const void * data,
                       size_t n, int32_t is_array);
void corral_compat_set_str(corral_compat_plan * plan, const char * key, const char * value);
void corral_compat_set_strs(corral_compat_plan * plan, const char * key, const char * const * values, size_t n);
void corral_compat_remove(corral_compat_plan * plan, const char * key);
// Cuts an array key to its first `n` entries (nothing when it is not longer).
void corral_compat_truncate(corral_compat_plan * plan, const char * key, size_t n);
// The architecture the loader must use from now on (also written to general.architecture).
void corral_compat_set_arch(corral_compat_plan * plan, const char * arch);
void corral_compat_rename(corral_compat_plan * plan, const char * from, const char * to);
// A smaller shape for a tensor (the loader then reads only its first bytes).
void corral_compat_reshape(corral_compat_plan * plan, const char * name, const int64_t * ne, int32_t n_dims);
void corral_compat_hide(corral_compat_plan * plan, const char * name);
// The tensor `name` (after renames) is the concatenation of `n` byte ranges of the file: `sizes[i]`
// bytes from absolute offset `offsets[i]`. Its shape (set with corral_compat_reshape) may then
// be larger than the file's entry for it.
void corral_compat_assemble(corral_compat_plan * plan, const char * name, const uint64_t * offsets,
                            const uint64_t * sizes, size_t n);
// The tensor `name` (after renames), stored as F16, is loaded as F32.
void corral_compat_promote(corral_compat_plan * plan, const char * name);
// The tensor `name` (after renames), an F32 vector, is loaded with row `row` of the 2-D tensor
// `source` (any type ggml converts to F32), converted. Projector plans only.
void corral_compat_row_as_f32(corral_compat_plan * plan, const char * name, const char * source, uint64_t row);
// Installs the plan for its path, replacing an earlier one; the plan is consumed.
void corral_compat_install(corral_compat_plan * plan);
// Removes the plan installed for `path`, if any.
void corral_compat_forget(const char * path);
// The same two for the projector loader's plans.
void corral_compat_install_clip(corral_compat_plan * plan);
void corral_compat_forget_clip(const char * path);
// The byte the projector's encodes on this thread stop at once it is non-zero (it is read while
// they run, from other threads), or NULL for none. The caller keeps it alive until it sets another.
void corral_compat_watch_encodes(const uint8_t * flag);

struct llama_context;
// The bytes of the buffers llama.cpp allocated for `ctx` (its model's weights, the KV cache and the
// compute buffers) in the memory of the device named `device` (ggml's name: `CUDA0`, `Vulkan0`…),
// host buffers left out: what the model holds on that device by llama.cpp's own accounting.
uint64_t corral_compat_device_bytes(const struct llama_context * ctx, const char * device);

#ifdef __cplusplus
}
#endif
