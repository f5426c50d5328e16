//! pianoroll's trainer: LSTM and RWKV-4 next-frame models over 88-key piano rolls, with tch.
//!
//! One file per model ([`lstm`], [`rwkv`]), each with its config, a parallel form for training
//! and a recurrent step for generation; [`model`] puts them behind one interface.

pub mod compare;
pub mod data;
pub mod device;
pub mod export;
pub mod lstm;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod plot;
pub mod rwkv;
pub mod sample;
pub mod train;
