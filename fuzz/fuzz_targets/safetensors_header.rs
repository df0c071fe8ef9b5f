//! The safetensors reader on any file: parsing never panics nor allocates beyond the file, and
//! every tensor it lists can be read (or is refused with an error) without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = corral_convert::safetensors::Safetensors::parse(data.to_vec()) else { return };
    let names: Vec<String> = file.names().map(String::from).collect();
    for name in names {
        if let Ok(t) = file.get(&name) {
            let count: u64 = t.shape.iter().product();
            assert_eq!(t.values.len() as u64, count, "{name}");
        }
    }
});
