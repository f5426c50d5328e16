//! Compiles the `.proto` files: the ONNX subset with prost, and (feature `grpc`) the
//! pianoroll.v1 API with tonic, plus its encoded descriptors for gRPC server reflection.
//! protox parses the files in Rust, so building needs no `protoc` from the system.

fn main() {
    let onnx = "onnx/onnx.proto";
    println!("cargo:rerun-if-changed={onnx}");
    let descriptors = protox::compile([onnx], ["."]).expect("onnx.proto parses");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates Rust from onnx.proto");

    #[cfg(feature = "grpc")]
    {
        use prost::Message;
        let api = "pianoroll/v1/composer.proto";
        println!("cargo:rerun-if-changed={api}");
        let descriptors = protox::compile([api], ["."]).expect("composer.proto parses");
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        std::fs::write(
            out.join("pianoroll_v1_descriptor.bin"),
            descriptors.encode_to_vec(),
        )
        .expect("writing the descriptor set");
        tonic_prost_build::configure()
            .compile_fds(descriptors)
            .expect("tonic generates Rust from composer.proto");
    }
}
