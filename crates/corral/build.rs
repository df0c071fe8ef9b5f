//! The `corral` binary finds llama.cpp's shared libraries in `lib/corral` beside itself, where the
//! engine's build script puts them, or in `../lib/corral` (test binaries in `deps/`, an installed
//! `bin/` + `lib/` layout). Copied anywhere together with that directory, it still runs.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/lib/corral:$ORIGIN/../lib/corral");
}
