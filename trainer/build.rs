// Embed libtorch's folder as the binaries' run path, so `cargo run`, `cargo test` and the built
// `trainer` find libtorch_cpu.so with no LD_LIBRARY_PATH (torch-sys links but sets no rpath).
// (Plain comments: `tests/build.rs` includes this file.)
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
