//! Compiles the `.proto` files with prost. protox parses them in Rust, so building needs no
//! `protoc` from the system.

fn main() {
    let protos = ["onnx/onnx.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."]).expect("the .proto files parse");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates Rust from the .proto files");
}
