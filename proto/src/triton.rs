//! A Triton Inference Server model configuration (`config.pbtxt`, protobuf text format of
//! Triton's `ModelConfig`) for an exported step model, so a Triton fleet serves the same ONNX
//! file with its ONNX Runtime backend: the sequence batcher keeps each sequence's recurrent
//! state as implicit state (every state input/output pair of the card, with its initial value),
//! and clients send `frame`, `uniform` and `temperature` and read `next_frame`, `probabilities`
//! and `logits` each step.

use std::fmt::Write;

use crate::card::ModelCard;

/// The most sequences Triton may batch into one step (the server's default limit of concurrent
/// generations).
pub const MAX_BATCH_SIZE: usize = 256;

/// Folder of a Triton model holding the files of non-zero initial states.
pub const INITIAL_STATE_DIR: &str = "initial_state";

/// The file holding state `input`'s initial value (raw little-endian f32, `width` of them).
pub fn initial_state_file(input: &str) -> String {
    format!("{input}.bin")
}

/// The initial value of a state of `width` elements that all start at `initial`, as the raw
/// f32 bytes Triton reads from an initial-state file.
pub fn initial_state_bytes(initial: f32, width: usize) -> Vec<u8> {
    initial.to_le_bytes().repeat(width)
}

/// `config.pbtxt` for the model `name` described by `card` (format 2: it samples in the
/// graph). States that start at 0 use `zero_data`; the others a file in
/// [`INITIAL_STATE_DIR`] named by [`initial_state_file`].
pub fn config_pbtxt(name: &str, card: &ModelCard) -> Result<String, String> {
    let sampling = card.sampling()?;
    let keys = card.pitch_count;
    let tensor = |name: &str, width: usize| {
        format!("  {{ name: {name:?} data_type: TYPE_FP32 dims: [ {width} ] }}")
    };
    let mut out = String::new();
    let _ = writeln!(out, "# Written by {} from model.json.", card.producer);
    let _ = writeln!(out, "name: {name:?}");
    let _ = writeln!(out, "backend: \"onnxruntime\"");
    let _ = writeln!(out, "max_batch_size: {MAX_BATCH_SIZE}");
    let inputs = [
        tensor(&card.frame_input, keys),
        tensor(&sampling.uniform_input, keys),
        tensor(&sampling.temperature_input, 1),
    ];
    let _ = writeln!(out, "input [\n{}\n]", inputs.join(",\n"));
    let outputs = [
        tensor(&sampling.next_frame_output, keys),
        tensor(&sampling.probabilities_output, keys),
        tensor(&card.logits_output, keys),
    ];
    let _ = writeln!(out, "output [\n{}\n]", outputs.join(",\n"));
    let states: Vec<String> = card
        .states
        .iter()
        .map(|s| {
            let initial = if s.initial == 0.0 {
                "zero_data: true".to_owned()
            } else {
                format!("data_file: {:?}", initial_state_file(&s.input))
            };
            format!(
                "    {{ input_name: {:?} output_name: {:?} data_type: TYPE_FP32 dims: [ {} ]\n      \
                 initial_state: {{ name: {:?} data_type: TYPE_FP32 dims: [ {} ] {initial} }} }}",
                s.input,
                s.output,
                s.width,
                format!("{} initial value", s.input),
                s.width
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "sequence_batching {{\n  max_sequence_idle_microseconds: 60000000\n  state [\n{}\n  ]\n}}",
        states.join(",\n")
    );
    Ok(out)
}
