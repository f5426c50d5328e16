//! pianoroll's trainer: LSTM and RWKV-4 next-frame models over 88-key piano rolls, with tch.
//!
//! One home per concern, and no module imports one that imports it back:
//!
//! - the models: [`lstm`] and [`rwkv`] (each with its config, a parallel form for training and a
//!   recurrent step for generation and export) and the output heads ([`head`]: independent
//!   keys, or NADE), behind one interface in [`model`], carrying a [`state::State`];
//! - what a run is: [`config`] (the configuration, recipes and presets, their checks), and
//!   [`auto`] (`--recipe auto`: a recipe chosen from the corpus's size);
//! - how it learns: [`data`] (batches), [`metrics`] (the loss and scores), [`optim`] (AdamW and
//!   the weight average), [`train`] (the loop), [`evaluate`] (scoring a split);
//! - what it leaves: [`run`] (the run folder: files, records, loading checkpoints);
//! - what is done with it: [`sample`] (generation), [`export`] (ONNX model folders, through
//!   [`onnx`]), [`compare`] (tables and curves, drawn by [`plot`]);
//! - where it runs: [`device`].

pub mod auto;
pub mod compare;
pub mod config;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod export;
pub mod head;
pub mod lstm;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod optim;
pub mod plot;
pub mod run;
pub mod rwkv;
pub mod sample;
pub mod state;
pub mod train;
