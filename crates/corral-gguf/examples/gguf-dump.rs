//! Prints a GGUF file's metadata (arrays summarised) and tensor index: `gguf-dump FILE`.

fn main() {
    let path = std::env::args().nth(1).expect("usage: gguf-dump FILE");
    let g = match corral_gguf::read_path(path.as_ref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    println!("version {} alignment {} data at {}", g.version, g.alignment, g.data_offset);
    for (k, v) in &g.metadata {
        match v.as_array() {
            Some(a) => println!("{k} = [{} elements]", a.len()),
            None => println!("{k} = {}", v.to_json()),
        }
    }
    for t in &g.tensors {
        println!("{} {} {:?} @{} ({} bytes)", t.name, t.kind.name(), t.dims, t.offset, t.size);
    }
    println!("parameters {} file type {:?}", g.parameter_count(), g.file_type());
}
