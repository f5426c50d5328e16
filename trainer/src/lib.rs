//! pianoroll's trainer: LSTM and RWKV-4 next-frame models over 88-key piano rolls, with tch.
//!
//! One file per model ([`lstm`], [`rwkv`]), each with its config, a parallel form for training
//! and a recurrent step for generation; [`model`] puts them behind one interface.

pub mod lstm;
pub mod model;
pub mod rwkv;
