// Applies the translation plans Corral computes for Ollama-published GGUFs (see corral-compat.h).
// This file holds no knowledge of any architecture: it only performs the edits it is given.

#include "corral-compat.h"

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama-ext.h"
#include "llama-impl.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

struct corral_compat_plan {
    struct Edit {
        enum Kind { SET, SET_STR, SET_STRS, REMOVE, TRUNCATE } kind;
        std::string key;
        int32_t type = 0;
        bool is_array = false;
        size_t n = 0;
        std::vector<uint8_t> bytes;
        std::vector<std::string> strings;
    };

    std::string path;
    std::string arch;
    std::vector<Edit> edits;
    std::vector<std::pair<std::string, std::string>> renames;
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    std::set<std::string> hidden;
    // Tensors assembled from byte ranges (absolute offset, size) of the file.
    std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> assembled;
    // Tensors stored as F16 and loaded as F32.
    std::set<std::string> promoted;
    // F32 vectors filled with one row of another tensor, converted: name -> (source, row).
    std::map<std::string, std::pair<std::string, uint64_t>> rows_as_f32;
};

namespace {

std::mutex g_mutex;
// Installed plans, by the path llama.cpp is given: for the model loader, and for the projector
// loader (the same file may be both, with a plan for each).
std::map<std::string, std::shared_ptr<const corral_compat_plan>> g_plans;
std::map<std::string, std::shared_ptr<const corral_compat_plan>> g_clip_plans;
// Where each loader's promoted tensors are in the file: (absolute offset, elements), by name.
std::map<const void *, std::map<std::string, std::pair<uint64_t, int64_t>>> g_promoted;
// Where the row each loader fills a tensor with is in the file, and what it holds.
struct row_source {
    uint64_t offset;  // absolute
    ggml_type type;
    int64_t n;        // elements
};
std::map<const void *, std::map<std::string, row_source>> g_rows;
// The plan each loader follows (null: none). A loader's address can be reused by a later loader:
// `translate` runs first for every file and replaces the entry.
std::map<const void *, std::shared_ptr<const corral_compat_plan>> g_active;

std::shared_ptr<const corral_compat_plan> active(const void * loader) {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_active.find(loader);
    return it == g_active.end() ? nullptr : it->second;
}

// Copies `size` bytes from `offs` of the concatenation of `ranges` (in `path`) into `dst`.
void read_ranges(const std::string & path, const std::vector<std::pair<uint64_t, uint64_t>> & ranges, size_t offs,
                 size_t size, uint8_t * dst) {
    std::unique_ptr<FILE, int (*)(FILE *)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw std::runtime_error("compat: cannot open " + path);
    size_t at = 0; // where this range starts in the concatenation
    for (const auto & [start, len] : ranges) {
        const size_t lo = std::max(offs, at);
        const size_t hi = std::min(offs + size, at + (size_t) len);
        if (lo < hi) {
            if (fseeko(f.get(), (off_t) (start + (lo - at)), SEEK_SET) != 0 ||
                std::fread(dst + (lo - offs), 1, hi - lo, f.get()) != hi - lo) {
                throw std::runtime_error("compat: cannot read " + path);
            }
        }
        at += len;
    }
    if (offs + size > at) throw std::runtime_error("compat: an assembled tensor is larger than its parts");
}

size_t scalar_size(int32_t type) {
    switch (type) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
        case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
        case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
        case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
        default: return 0;
    }
}

void set_scalar(gguf_context * meta, const char * key, int32_t type, const uint8_t * p) {
    switch (type) {
        case GGUF_TYPE_UINT8:   gguf_set_val_u8  (meta, key, *p); break;
        case GGUF_TYPE_INT8:    gguf_set_val_i8  (meta, key, (int8_t) *p); break;
        case GGUF_TYPE_BOOL:    gguf_set_val_bool(meta, key, *p != 0); break;
        case GGUF_TYPE_UINT16:  { uint16_t v; std::memcpy(&v, p, 2); gguf_set_val_u16(meta, key, v); break; }
        case GGUF_TYPE_INT16:   { int16_t  v; std::memcpy(&v, p, 2); gguf_set_val_i16(meta, key, v); break; }
        case GGUF_TYPE_UINT32:  { uint32_t v; std::memcpy(&v, p, 4); gguf_set_val_u32(meta, key, v); break; }
        case GGUF_TYPE_INT32:   { int32_t  v; std::memcpy(&v, p, 4); gguf_set_val_i32(meta, key, v); break; }
        case GGUF_TYPE_FLOAT32: { float    v; std::memcpy(&v, p, 4); gguf_set_val_f32(meta, key, v); break; }
        case GGUF_TYPE_UINT64:  { uint64_t v; std::memcpy(&v, p, 8); gguf_set_val_u64(meta, key, v); break; }
        case GGUF_TYPE_INT64:   { int64_t  v; std::memcpy(&v, p, 8); gguf_set_val_i64(meta, key, v); break; }
        case GGUF_TYPE_FLOAT64: { double   v; std::memcpy(&v, p, 8); gguf_set_val_f64(meta, key, v); break; }
        default: break;
    }
}

void apply_edit(gguf_context * meta, const corral_compat_plan::Edit & e) {
    const char * key = e.key.c_str();
    switch (e.kind) {
        case corral_compat_plan::Edit::REMOVE:
            gguf_remove_key(meta, key);
            break;
        case corral_compat_plan::Edit::TRUNCATE: {
            const int64_t id = gguf_find_key(meta, key);
            if (id < 0 || gguf_get_kv_type(meta, id) != GGUF_TYPE_ARRAY || gguf_get_arr_n(meta, id) <= e.n) break;
            const gguf_type type = gguf_get_arr_type(meta, id);
            if (type == GGUF_TYPE_STRING) {
                // Copied first: setting the key frees the strings the pointers point into.
                std::vector<std::string> kept;
                kept.reserve(e.n);
                for (size_t i = 0; i < e.n; ++i) kept.emplace_back(gguf_get_arr_str(meta, id, i));
                std::vector<const char *> ptrs;
                ptrs.reserve(e.n);
                for (const auto & s : kept) ptrs.push_back(s.c_str());
                gguf_remove_key(meta, key);
                gguf_set_arr_str(meta, key, ptrs.data(), ptrs.size());
            } else if (scalar_size(type) > 0) {
                const auto * p = static_cast<const uint8_t *>(gguf_get_arr_data(meta, id));
                std::vector<uint8_t> kept(p, p + e.n * scalar_size(type));
                gguf_remove_key(meta, key);
                gguf_set_arr_data(meta, key, type, kept.data(), e.n);
            }
            break;
        }
        case corral_compat_plan::Edit::SET_STR:
            gguf_remove_key(meta, key);
            gguf_set_val_str(meta, key, e.strings.at(0).c_str());
            break;
        case corral_compat_plan::Edit::SET_STRS: {
            std::vector<const char *> ptrs;
            ptrs.reserve(e.strings.size());
            for (const auto & s : e.strings) ptrs.push_back(s.c_str());
            gguf_remove_key(meta, key);
            gguf_set_arr_str(meta, key, ptrs.data(), ptrs.size());
            break;
        }
        case corral_compat_plan::Edit::SET:
            // Removed first: gguf refuses to change the type of a key in place.
            gguf_remove_key(meta, key);
            if (e.is_array) {
                gguf_set_arr_data(meta, key, (gguf_type) e.type, e.bytes.data(), e.n);
            } else {
                set_scalar(meta, key, e.type, e.bytes.data());
            }
            break;
    }
}

void set_name(gguf_context * meta, ggml_context * ctx, const std::string & from, const std::string & to) {
    ggml_tensor * t = ggml_get_tensor(ctx, from.c_str());
    const int64_t id = gguf_find_tensor(meta, from.c_str());
    if (!t || id < 0) {
        throw std::runtime_error("compat: tensor '" + from + "' to rename is not in the file");
    }
    if (to.size() >= GGML_MAX_NAME) {
        throw std::runtime_error("compat: tensor name '" + to + "' is too long");
    }
    ggml_set_name(t, to.c_str());
    // gguf has no rename: its name buffer (GGML_MAX_NAME bytes) is written in place.
    char * name = const_cast<char *>(gguf_get_tensor_name(meta, id));
    std::memset(name, 0, GGML_MAX_NAME);
    std::memcpy(name, to.c_str(), to.size());
}

void set_shape(gguf_context * meta, ggml_context * ctx, const std::string & name, const std::vector<int64_t> & ne,
               bool may_grow) {
    ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
    const int64_t id = gguf_find_tensor(meta, name.c_str());
    if (!t || id < 0 || ne.empty() || ne.size() > GGML_MAX_DIMS) {
        throw std::runtime_error("compat: tensor '" + name + "' to reshape is not in the file");
    }
    const size_t before = ggml_nbytes(t);
    int64_t * gguf_ne = const_cast<int64_t *>(gguf_get_tensor_ne(meta, id));
    for (int i = 0; i < GGML_MAX_DIMS; ++i) {
        t->ne[i] = i < (int) ne.size() ? ne[i] : 1;
        gguf_ne[i] = t->ne[i];
    }
    t->nb[0] = ggml_type_size(t->type);
    t->nb[1] = t->nb[0] * (t->ne[0] / ggml_blck_size(t->type));
    for (int i = 2; i < GGML_MAX_DIMS; ++i) {
        t->nb[i] = t->nb[i - 1] * t->ne[i - 1];
    }
    if (ggml_nbytes(t) > before && !may_grow) {
        throw std::runtime_error("compat: tensor '" + name + "' cannot grow in place");
    }
}

// Gives an F16 tensor the F32 type in the loader's context (its strides follow), remembering
// where its F16 data is in the file; the gguf index is left alone (changing a type there would
// move every later tensor's offset).
void promote(const void * loader, gguf_context * meta, ggml_context * ctx, const std::string & name) {
    ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
    const int64_t id = gguf_find_tensor(meta, name.c_str());
    if (!t || id < 0) {
        throw std::runtime_error("compat: tensor '" + name + "' to load as F32 is not in the file");
    }
    if (t->type != GGML_TYPE_F16) return;
    const uint64_t offset = gguf_get_data_offset(meta) + gguf_get_tensor_offset(meta, id);
    g_promoted[loader][name] = {offset, ggml_nelements(t)};
    t->type = GGML_TYPE_F32;
    t->nb[0] = sizeof(float);
    for (int i = 1; i < GGML_MAX_DIMS; ++i) t->nb[i] = t->nb[i - 1] * t->ne[i - 1];
}

// Copies `bytes` bytes of `data` into `cur`, wherever the loader placed it.
void store(ggml_tensor * cur, const void * data, size_t bytes) {
    if (cur->buffer) {
        ggml_backend_tensor_set(cur, data, 0, bytes);
    } else if (cur->data) {
        std::memcpy(cur->data, data, bytes);
    } else {
        throw std::runtime_error(std::string("compat: nowhere to load ") + ggml_get_name(cur));
    }
}

// Fills `cur` from `n` F16 values at `offset` of `path`, as F32.
void load_promoted(const std::string & path, uint64_t offset, int64_t n, ggml_tensor * cur) {
    std::vector<uint8_t> half((size_t) n * sizeof(ggml_fp16_t));
    read_ranges(path, {{offset, half.size()}}, 0, half.size(), half.data());
    std::vector<float> values((size_t) n);
    ggml_fp16_to_fp32_row(reinterpret_cast<const ggml_fp16_t *>(half.data()), values.data(), n);
    store(cur, values.data(), values.size() * sizeof(float));
}

// Records where row `row` of `source` is in the file, for `name` (an F32 vector as long as the
// row) to be filled with at load. Throws when the plan does not fit the file: a tensor missing,
// a shape or type that does not match, a row past the end, a type ggml cannot convert.
void plan_row(const void * loader, gguf_context * meta, ggml_context * ctx, const std::string & name,
              const std::string & source, uint64_t row) {
    const ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
    const ggml_tensor * s = ggml_get_tensor(ctx, source.c_str());
    const int64_t id = gguf_find_tensor(meta, source.c_str());
    if (!t || !s || id < 0) {
        throw std::runtime_error("compat: tensor '" + name + "' or its source '" + source + "' is not in the file");
    }
    const bool fits = t->type == GGML_TYPE_F32 && ggml_nelements(t) == s->ne[0] && s->ne[2] == 1 && s->ne[3] == 1 &&
                      row < (uint64_t) s->ne[1] && s->ne[0] % ggml_blck_size(s->type) == 0 &&
                      (s->type == GGML_TYPE_F32 || ggml_get_type_traits(s->type)->to_float != nullptr);
    if (!fits) {
        throw std::runtime_error("compat: tensor '" + name + "' cannot take row " + std::to_string(row) + " of '" +
                                 source + "'");
    }
    const uint64_t offset = gguf_get_data_offset(meta) + gguf_get_tensor_offset(meta, id) +
                            row * (uint64_t) ggml_row_size(s->type, s->ne[0]);
    g_rows[loader][name] = {offset, s->type, s->ne[0]};
}

// Fills `cur`, an F32 vector, with the row `src` locates in `path`, converted to F32.
void load_row(const std::string & path, const row_source & src, ggml_tensor * cur, size_t n_size) {
    if (cur->type != GGML_TYPE_F32 || ggml_nelements(cur) != src.n || n_size != (size_t) src.n * sizeof(float)) {
        throw std::runtime_error(std::string("compat: tensor '") + ggml_get_name(cur) + "' is not the row's size");
    }
    std::vector<uint8_t> raw(ggml_row_size(src.type, src.n));
    read_ranges(path, {{src.offset, raw.size()}}, 0, raw.size(), raw.data());
    std::vector<float> values((size_t) src.n);
    if (src.type == GGML_TYPE_F32) {
        std::memcpy(values.data(), raw.data(), n_size);
    } else {
        ggml_get_type_traits(src.type)->to_float(raw.data(), values.data(), src.n);
    }
    store(cur, values.data(), n_size);
}

// The plan `registry` holds for `fname` (null: none), made the one `loader` follows; whatever an
// earlier loader at the same address followed is forgotten.
std::shared_ptr<const corral_compat_plan> activate(
    const std::map<std::string, std::shared_ptr<const corral_compat_plan>> & registry, const void * loader,
    const std::string & fname) {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = registry.find(fname);
    auto plan = it == registry.end() ? nullptr : it->second;
    g_active[loader] = plan;
    g_promoted.erase(loader);
    g_rows.erase(loader);
    return plan;
}

// The header edits both loaders take: keys, the architecture key, tensor renames.
void apply_header(const corral_compat_plan & plan, gguf_context * meta, ggml_context * ctx) {
    for (const auto & e : plan.edits) apply_edit(meta, e);
    if (!plan.arch.empty()) {
        gguf_remove_key(meta, "general.architecture");
        gguf_set_val_str(meta, "general.architecture", plan.arch.c_str());
    }
    for (const auto & [from, to] : plan.renames) set_name(meta, ctx, from, to);
}

// Installs `plan` in `registry` under its path (replacing an earlier one), or removes `path`'s.
void install_in(std::map<std::string, std::shared_ptr<const corral_compat_plan>> & registry,
                corral_compat_plan * plan) {
    if (!plan) return;
    std::shared_ptr<const corral_compat_plan> owned(plan);
    std::lock_guard<std::mutex> lock(g_mutex);
    registry[owned->path] = owned;
}

void forget_in(std::map<std::string, std::shared_ptr<const corral_compat_plan>> & registry, const char * path) {
    if (!path) return;
    std::lock_guard<std::mutex> lock(g_mutex);
    registry.erase(path);
}

} // namespace

namespace corral_compat {

void translate_clip(const void * loader, const std::string & fname, gguf_context * meta, ggml_context * ctx) {
    auto plan = activate(g_clip_plans, loader, fname);
    if (!plan || !meta || !ctx) return;
    apply_header(*plan, meta, ctx);
    // An assembled tensor may be shaped otherwise than the entry it is read through (Qwen3-VL's
    // whole QKV projections, its patch kernel split per frame).
    for (const auto & [name, ne] : plan->shapes) set_shape(meta, ctx, name, ne, plan->assembled.count(name) > 0);
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto & name : plan->promoted) promote(loader, meta, ctx, name);
    for (const auto & [name, from] : plan->rows_as_f32) plan_row(loader, meta, ctx, name, from.first, from.second);
}

bool translate(const void * loader, const std::string & fname, gguf_context * meta, ggml_context * ctx,
               std::string & arch_name) {
    auto plan = activate(g_plans, loader, fname);
    if (!plan || !meta || !ctx) return false;
    apply_header(*plan, meta, ctx);
    if (!plan->arch.empty()) arch_name = plan->arch;
    for (const auto & [name, ne] : plan->shapes) set_shape(meta, ctx, name, ne, plan->assembled.count(name) > 0);
    LLAMA_LOG_INFO("%s: translated an Ollama-published GGUF: %zu keys set or removed, %zu tensors renamed, "
                   "%zu reshaped, %zu hidden, %zu assembled\n",
                   __func__, plan->edits.size(), plan->renames.size(), plan->shapes.size(), plan->hidden.size(),
                   plan->assembled.size());
    // An assembled tensor is not where the file's index says: the loader reads, not maps.
    return !plan->assembled.empty();
}

bool skip(const void * loader, const char * tensor_name) {
    auto plan = active(loader);
    return plan && plan->hidden.count(tensor_name) > 0;
}

bool load(const void * loader, ggml_tensor * cur, size_t n_size) {
    auto plan = active(loader);
    if (!plan) return false;
    std::pair<uint64_t, int64_t> promoted{0, -1};
    row_source row{0, GGML_TYPE_F32, -1};
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        auto p = g_promoted.find(loader);
        if (p != g_promoted.end()) {
            auto q = p->second.find(ggml_get_name(cur));
            if (q != p->second.end()) promoted = q->second;
        }
        auto r = g_rows.find(loader);
        if (r != g_rows.end()) {
            auto q = r->second.find(ggml_get_name(cur));
            if (q != r->second.end()) row = q->second;
        }
    }
    if (promoted.second >= 0) {
        load_promoted(plan->path, promoted.first, promoted.second, cur);
        return true;
    }
    if (row.n >= 0) {
        load_row(plan->path, row, cur, n_size);
        return true;
    }
    auto it = plan->assembled.find(ggml_get_name(cur));
    if (it == plan->assembled.end()) return false;
    std::vector<uint8_t> bytes(n_size);
    read_ranges(plan->path, it->second, 0, n_size, bytes.data());
    store(cur, bytes.data(), n_size);
    return true;
}

bool load_range(const void * loader, const ggml_tensor * cur, size_t offs, size_t size, void * buf) {
    auto plan = active(loader);
    if (!plan || !buf) return false;
    auto it = plan->assembled.find(ggml_get_name(cur));
    if (it == plan->assembled.end()) return false;
    read_ranges(plan->path, it->second, offs, size, static_cast<uint8_t *>(buf));
    return true;
}

namespace {

// The flag the encodes of this thread stop at (see corral_compat_watch_encodes).
thread_local const uint8_t * t_encode_stop = nullptr;

bool encode_stopped(void * flag) {
    return __atomic_load_n(static_cast<const uint8_t *>(flag), __ATOMIC_RELAXED) != 0;
}

} // namespace

void watch_encode(ggml_backend_t cpu) {
    ggml_backend_dev_t dev = cpu ? ggml_backend_get_device(cpu) : nullptr;
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (!reg) return;
    auto set = (ggml_backend_set_abort_callback_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_abort_callback");
    if (!set) return;
    // Set for every graph, so that a flag of an earlier thread is never consulted.
    const uint8_t * flag = t_encode_stop;
    set(cpu, flag ? encode_stopped : nullptr, const_cast<uint8_t *>(flag));
}

} // namespace corral_compat

extern "C" {

void corral_compat_watch_encodes(const uint8_t * flag) { corral_compat::t_encode_stop = flag; }

uint64_t corral_compat_device_bytes(const llama_context * ctx, const char * device) {
    if (!ctx || !device) return 0;
    uint64_t total = 0;
    for (const auto & [buft, data] : llama_get_memory_breakdown(ctx)) {
        ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
        // Host buffers (the CPU's, and pinned staging memory of a GPU backend) are RAM.
        if (!dev || ggml_backend_buft_is_host(buft) || strcmp(ggml_backend_dev_name(dev), device) != 0) continue;
        total += data.total();
    }
    return total;
}

corral_compat_plan * corral_compat_begin(const char * path) {
    auto * plan = new corral_compat_plan();
    plan->path = path ? path : "";
    return plan;
}

void corral_compat_set(corral_compat_plan * plan, const char * key, int32_t gguf_type, const void * data,
                       size_t n, int32_t is_array) {
    const size_t size = scalar_size(gguf_type);
    if (!plan || !key || size == 0 || (n > 0 && !data)) return;
    corral_compat_plan::Edit e{corral_compat_plan::Edit::SET, key};
    e.type = gguf_type;
    e.is_array = is_array != 0;
    e.n = e.is_array ? n : 1;
    const auto * p = static_cast<const uint8_t *>(data);
    e.bytes.assign(p, p + size * e.n);
    plan->edits.push_back(std::move(e));
}

void corral_compat_set_str(corral_compat_plan * plan, const char * key, const char * value) {
    if (!plan || !key || !value) return;
    corral_compat_plan::Edit e{corral_compat_plan::Edit::SET_STR, key};
    e.strings.emplace_back(value);
    plan->edits.push_back(std::move(e));
}

void corral_compat_set_strs(corral_compat_plan * plan, const char * key, const char * const * values, size_t n) {
    if (!plan || !key || (n > 0 && !values)) return;
    corral_compat_plan::Edit e{corral_compat_plan::Edit::SET_STRS, key};
    e.strings.reserve(n);
    for (size_t i = 0; i < n; ++i) e.strings.emplace_back(values[i] ? values[i] : "");
    plan->edits.push_back(std::move(e));
}

void corral_compat_remove(corral_compat_plan * plan, const char * key) {
    if (!plan || !key) return;
    plan->edits.push_back(corral_compat_plan::Edit{corral_compat_plan::Edit::REMOVE, key});
}

void corral_compat_truncate(corral_compat_plan * plan, const char * key, size_t n) {
    if (!plan || !key) return;
    corral_compat_plan::Edit e{corral_compat_plan::Edit::TRUNCATE, key};
    e.n = n;
    plan->edits.push_back(std::move(e));
}

void corral_compat_set_arch(corral_compat_plan * plan, const char * arch) {
    if (plan && arch) plan->arch = arch;
}

void corral_compat_rename(corral_compat_plan * plan, const char * from, const char * to) {
    if (plan && from && to) plan->renames.emplace_back(from, to);
}

void corral_compat_reshape(corral_compat_plan * plan, const char * name, const int64_t * ne, int32_t n_dims) {
    if (!plan || !name || !ne || n_dims <= 0 || n_dims > GGML_MAX_DIMS) return;
    plan->shapes.emplace_back(name, std::vector<int64_t>(ne, ne + n_dims));
}

void corral_compat_hide(corral_compat_plan * plan, const char * name) {
    if (plan && name) plan->hidden.insert(name);
}

void corral_compat_assemble(corral_compat_plan * plan, const char * name, const uint64_t * offsets,
                            const uint64_t * sizes, size_t n) {
    if (!plan || !name || (n > 0 && (!offsets || !sizes))) return;
    auto & ranges = plan->assembled[name];
    for (size_t i = 0; i < n; ++i) ranges.emplace_back(offsets[i], sizes[i]);
}

void corral_compat_promote(corral_compat_plan * plan, const char * name) {
    if (plan && name) plan->promoted.insert(name);
}

void corral_compat_row_as_f32(corral_compat_plan * plan, const char * name, const char * source, uint64_t row) {
    if (plan && name && source) plan->rows_as_f32[name] = {source, row};
}

void corral_compat_install_clip(corral_compat_plan * plan) { install_in(g_clip_plans, plan); }

void corral_compat_forget_clip(const char * path) { forget_in(g_clip_plans, path); }

void corral_compat_install(corral_compat_plan * plan) { install_in(g_plans, plan); }

void corral_compat_forget(const char * path) { forget_in(g_plans, path); }

} // extern "C"
