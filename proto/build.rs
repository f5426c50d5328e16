//! Compiles the `.proto` files: the ONNX subset with prost, and (feature `grpc`) the
//! pianoroll.v1 API and the Open Inference Protocol with tonic, plus their encoded descriptors
//! for gRPC server reflection.
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
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        for (api, descriptor) in [
            ("pianoroll/v1/composer.proto", "pianoroll_v1_descriptor.bin"),
            (
                "inference/grpc_predict_v2.proto",
                "inference_descriptor.bin",
            ),
        ] {
            println!("cargo:rerun-if-changed={api}");
            let descriptors = protox::compile([api], ["."])
                .unwrap_or_else(|e| panic!("{api} does not parse: {e}"));
            std::fs::write(out.join(descriptor), descriptors.encode_to_vec())
                .expect("writing the descriptor set");
            tonic_prost_build::configure()
                .compile_fds(descriptors)
                .unwrap_or_else(|e| panic!("tonic cannot generate Rust from {api}: {e}"));
        }
    }
}
