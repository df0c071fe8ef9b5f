//! A device that offers less memory than it has (`corral rpc --max-memory`).
//!
//! ggml's RPC server answers a client's memory question with its device's own figures, and this
//! ggml's server has no cap of its own. So the server is given a stand-in for each device: a
//! ggml device whose every operation is the real device's, called with the real device, except
//! that the memory it reports is at most the cap, less what was taken from the device since the
//! stand-in was made. Clients place layers by that free memory (llama.cpp's fit), so they stay
//! within the cap; nothing here stops a client that allocates regardless.
//!
//! The stand-in is built on ggml's device interface (`ggml-backend-impl.h` of the vendored
//! source): its layout is mirrored here, field for field. An operation the real device lacks
//! answers as ggml does for a missing one (null, or false).

use std::ffi::{c_char, c_void};

use llama_cpp_sys_2 as sys;

type Dev = sys::ggml_backend_dev_t;

/// `struct ggml_backend_device_i`, in its order.
#[repr(C)]
#[derive(Clone, Copy)]
struct Iface {
    get_name: Option<unsafe extern "C" fn(Dev) -> *const c_char>,
    get_description: Option<unsafe extern "C" fn(Dev) -> *const c_char>,
    get_memory: Option<unsafe extern "C" fn(Dev, *mut usize, *mut usize)>,
    get_type: Option<unsafe extern "C" fn(Dev) -> sys::ggml_backend_dev_type>,
    get_props: Option<unsafe extern "C" fn(Dev, *mut sys::ggml_backend_dev_props)>,
    init_backend: Option<unsafe extern "C" fn(Dev, *const c_char) -> sys::ggml_backend_t>,
    get_buffer_type: Option<unsafe extern "C" fn(Dev) -> sys::ggml_backend_buffer_type_t>,
    get_host_buffer_type: Option<unsafe extern "C" fn(Dev) -> sys::ggml_backend_buffer_type_t>,
    buffer_from_host_ptr: Option<unsafe extern "C" fn(Dev, *mut c_void, usize, usize) -> sys::ggml_backend_buffer_t>,
    supports_op: Option<unsafe extern "C" fn(Dev, *const sys::ggml_tensor) -> bool>,
    supports_buft: Option<unsafe extern "C" fn(Dev, sys::ggml_backend_buffer_type_t) -> bool>,
    offload_op: Option<unsafe extern "C" fn(Dev, *const sys::ggml_tensor) -> bool>,
    event_new: Option<unsafe extern "C" fn(Dev) -> sys::ggml_backend_event_t>,
    event_free: Option<unsafe extern "C" fn(Dev, sys::ggml_backend_event_t)>,
    event_synchronize: Option<unsafe extern "C" fn(Dev, sys::ggml_backend_event_t)>,
}

/// `struct ggml_backend_device`, followed by what the stand-in needs.
#[repr(C)]
struct Capped {
    iface: Iface,
    reg: sys::ggml_backend_reg_t,
    context: *mut c_void,
    /// The real device.
    real: Dev,
    cap: u64,
    /// The real device's free memory when the stand-in was made.
    free_at_start: u64,
}

/// The stand-in behind `dev` (one of ours).
unsafe fn this(dev: Dev) -> &'static Capped {
    &*(dev as *const Capped)
}

/// The real device's interface.
unsafe fn real(dev: Dev) -> (Dev, &'static Iface) {
    let real = this(dev).real;
    (real, &*(real as *const Iface))
}

// Each operation is the real device's, on the real device.
unsafe extern "C" fn get_name(dev: Dev) -> *const c_char {
    let (d, i) = real(dev);
    i.get_name.map_or(std::ptr::null(), |f| f(d))
}
unsafe extern "C" fn get_description(dev: Dev) -> *const c_char {
    let (d, i) = real(dev);
    i.get_description.map_or(std::ptr::null(), |f| f(d))
}
unsafe extern "C" fn get_type(dev: Dev) -> sys::ggml_backend_dev_type {
    let (d, i) = real(dev);
    i.get_type.map_or(sys::GGML_BACKEND_DEVICE_TYPE_CPU, |f| f(d))
}
unsafe extern "C" fn get_props(dev: Dev, props: *mut sys::ggml_backend_dev_props) {
    let (d, i) = real(dev);
    if let Some(f) = i.get_props {
        f(d, props);
    }
    let (mut free, mut total) = (0usize, 0usize);
    get_memory(dev, &mut free, &mut total);
    (*props).memory_free = free;
    (*props).memory_total = total;
}
/// The start of `struct ggml_backend`: its guid, its interface (16 operations), its device.
#[repr(C)]
struct BackendHead {
    guid: *mut c_void,
    iface: [*mut c_void; 16],
    device: Dev,
}

/// The real device's backend, pointed at the stand-in: ggml's RPC server asks a backend's device
/// for the memory it reports.
unsafe extern "C" fn init_backend(dev: Dev, params: *const c_char) -> sys::ggml_backend_t {
    let (d, i) = real(dev);
    let backend = i.init_backend.map_or(std::ptr::null_mut(), |f| f(d, params));
    if !backend.is_null() {
        let head = &mut *(backend as *mut BackendHead);
        // Only where the layout is the one mirrored here: the field holds the real device.
        if head.device == d {
            head.device = dev;
        } else {
            eprintln!("corral rpc: warning: this ggml's backend layout is not the one expected; the memory cap is not reported");
        }
    }
    backend
}
unsafe extern "C" fn get_buffer_type(dev: Dev) -> sys::ggml_backend_buffer_type_t {
    let (d, i) = real(dev);
    i.get_buffer_type.map_or(std::ptr::null_mut(), |f| f(d))
}
unsafe extern "C" fn get_host_buffer_type(dev: Dev) -> sys::ggml_backend_buffer_type_t {
    let (d, i) = real(dev);
    i.get_host_buffer_type.map_or(std::ptr::null_mut(), |f| f(d))
}
unsafe extern "C" fn buffer_from_host_ptr(
    dev: Dev,
    p: *mut c_void,
    size: usize,
    max: usize,
) -> sys::ggml_backend_buffer_t {
    let (d, i) = real(dev);
    i.buffer_from_host_ptr.map_or(std::ptr::null_mut(), |f| f(d, p, size, max))
}
unsafe extern "C" fn supports_op(dev: Dev, op: *const sys::ggml_tensor) -> bool {
    let (d, i) = real(dev);
    i.supports_op.is_some_and(|f| f(d, op))
}
unsafe extern "C" fn supports_buft(dev: Dev, buft: sys::ggml_backend_buffer_type_t) -> bool {
    let (d, i) = real(dev);
    i.supports_buft.is_some_and(|f| f(d, buft))
}
unsafe extern "C" fn offload_op(dev: Dev, op: *const sys::ggml_tensor) -> bool {
    let (d, i) = real(dev);
    i.offload_op.is_some_and(|f| f(d, op))
}
unsafe extern "C" fn event_new(dev: Dev) -> sys::ggml_backend_event_t {
    let (d, i) = real(dev);
    i.event_new.map_or(std::ptr::null_mut(), |f| f(d))
}
unsafe extern "C" fn event_free(dev: Dev, e: sys::ggml_backend_event_t) {
    let (d, i) = real(dev);
    if let Some(f) = i.event_free {
        f(d, e);
    }
}
unsafe extern "C" fn event_synchronize(dev: Dev, e: sys::ggml_backend_event_t) {
    let (d, i) = real(dev);
    if let Some(f) = i.event_synchronize {
        f(d, e);
    }
}

/// The real figures, capped (see the module docs).
unsafe extern "C" fn get_memory(dev: Dev, free: *mut usize, total: *mut usize) {
    let (d, i) = real(dev);
    let (mut f, mut t) = (0usize, 0usize);
    if let Some(get) = i.get_memory {
        get(d, &mut f, &mut t);
    }
    let c = this(dev);
    let taken = c.free_at_start.saturating_sub(f as u64);
    *total = (t as u64).min(c.cap) as usize;
    *free = (f as u64).min(c.cap.saturating_sub(taken)) as usize;
}

/// A stand-in for `real` that reports at most `cap` bytes. It lives as long as the process.
pub(super) fn capped(real_dev: Dev, cap: u64) -> Dev {
    // SAFETY: `real_dev` is a device of ggml's registry, laid out as `struct ggml_backend_device`
    // begins (its interface first); the stand-in is leaked, so the pointer stays valid.
    unsafe {
        let (mut free, mut total) = (0usize, 0usize);
        sys::ggml_backend_dev_memory(real_dev, &mut free, &mut total);
        let iface = Iface {
            get_name: Some(get_name),
            get_description: Some(get_description),
            get_memory: Some(get_memory),
            get_type: Some(get_type),
            get_props: Some(get_props),
            init_backend: Some(init_backend),
            get_buffer_type: Some(get_buffer_type),
            get_host_buffer_type: Some(get_host_buffer_type),
            buffer_from_host_ptr: Some(buffer_from_host_ptr),
            supports_op: Some(supports_op),
            supports_buft: Some(supports_buft),
            offload_op: Some(offload_op),
            event_new: Some(event_new),
            event_free: Some(event_free),
            event_synchronize: Some(event_synchronize),
        };
        let reg = sys::ggml_backend_dev_backend_reg(real_dev);
        let standin = Box::new(Capped {
            iface,
            reg,
            context: std::ptr::null_mut(),
            real: real_dev,
            cap,
            free_at_start: free as u64,
        });
        Box::into_raw(standin) as Dev
    }
}
