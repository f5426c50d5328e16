//! The end-to-end tests train models with the trainer library, so their binaries need libtorch's
//! run path too: the same build script as the trainer's.
include!("../trainer/build.rs");
