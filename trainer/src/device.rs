//! Choosing where tensors live: `--device auto|cpu|cuda|cuda:N`, and making libtorch's CUDA
//! backend available in the first place.
//!
//! The linker drops `libtorch_cuda.so` from a tch binary because nothing in it names that
//! library's symbols (`--as-needed`), so without [`load_cuda_backend`] `tch::Cuda::is_available()`
//! is false even on a GPU machine. Loading the library by hand registers the backend. With the
//! CPU-only libtorch (CI, laptops) the library is absent and loading quietly does nothing, so one
//! binary serves both.

use std::sync::Once;

use tch::Device;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "--device {0}: no CUDA device is available (is this a GPU machine with the CUDA libtorch?)"
    )]
    NoCuda(String),
    #[error("--device {spec}: only {count} CUDA device(s) available")]
    NoSuchCuda { spec: String, count: i64 },
    #[error("--device {0}: expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
}

/// Register libtorch's CUDA backend if its library can be found (idempotent; call before any
/// tch call that asks about CUDA).
pub fn load_cuda_backend() {
    static LOADED: Once = Once::new();
    LOADED.call_once(|| {
        // SAFETY: dlopen with a constant, NUL-terminated name; the handle is kept for the
        // process, and a failure (no CUDA libtorch) returns null, which is fine to ignore.
        unsafe {
            libc::dlopen(
                c"libtorch_cuda.so".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            );
        }
    });
}

/// True when libtorch can use at least one CUDA device (loads the backend first).
pub fn cuda_available() -> bool {
    load_cuda_backend();
    tch::Cuda::is_available()
}

/// The device a `--device` value names. `auto` picks the first GPU when there is one, else the
/// CPU; `cuda` or `cuda:N` without that GPU is an error rather than a silent CPU run.
pub fn parse(spec: &str) -> Result<Device, DeviceError> {
    load_cuda_backend();
    let count = tch::Cuda::device_count();
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" if count > 0 => Ok(Device::Cuda(0)),
        "cuda" => Err(DeviceError::NoCuda(spec.into())),
        other => {
            let index: usize = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| DeviceError::Unknown(other.into()))?;
            if count == 0 {
                Err(DeviceError::NoCuda(other.into()))
            } else if (index as i64) < count {
                Ok(Device::Cuda(index))
            } else {
                Err(DeviceError::NoSuchCuda {
                    spec: other.into(),
                    count,
                })
            }
        }
    }
}
