//! The Open Inference Protocol (KServe v2) endpoint, driven by a client no one here wrote:
//! PyPI's `tritonclient[grpc]`. A piece composed through it equals the same request made through
//! `pianoroll.v1` (frames and MIDI bytes), and bad tensors get INVALID_ARGUMENT by name.

use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    ComposeRequest, GenerateRequest, generate_request::Primer, generate_response,
};
use serve::server::ServerConfig;
use tokio_stream::StreamExt;

mod common;
use common::Running;

const TRITON_CLIENT: &str = r#"
import json, sys
import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

url, model, primer_path = sys.argv[1:4]
client = triton.InferenceServerClient(url=url)
primer = open(primer_path, "rb").read()

def tensor(name, datatype, values):
    t = triton.InferInput(name, [len(values)], datatype)
    t.set_data_from_numpy(np.array(values, dtype={
        "INT32": np.int32, "UINT64": np.uint64, "FP32": np.float32, "FP64": np.float64,
        "BYTES": np.object_}[datatype]))
    return t

def status(inputs, model=model, outputs=None):
    try:
        client.infer(model, inputs, outputs=outputs)
        return "OK"
    except InferenceServerException as e:
        return e.status() + ": " + e.message()

good = [tensor("frames", "INT32", [24]), tensor("seed", "UINT64", [77]),
        tensor("temperature", "FP32", [0.9]), tensor("primer_midi", "BYTES", [primer])]
result = client.infer(model, good, request_id="request-1",
                      outputs=[triton.InferRequestedOutput("roll"), triton.InferRequestedOutput("midi")])
roll = result.as_numpy("roll")
midi = result.as_numpy("midi")
print(json.dumps({
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "unknown_ready": client.is_model_ready("no-such-model"),
    "server": client.get_server_metadata(as_json=True),
    "metadata": client.get_model_metadata(model, as_json=True),
    "id": result.get_response().id,
    "roll_dtype": str(roll.dtype),
    "roll_shape": list(roll.shape),
    "roll": [[int(21 + k) for k in np.flatnonzero(frame)] for frame in roll],
    "midi": midi[0].hex(),
    "silent_start": client.infer(model, [tensor("frames", "INT32", [4])]).as_numpy("roll").shape[0],
    "harmonized_frames": client.infer(model, [tensor("melody_midi", "BYTES", [primer])]).as_numpy("roll").shape[0],
    "errors": {
        "float_frames": status([tensor("frames", "FP32", [24.0])]),
        "two_frames": status([tensor("frames", "INT32", [24, 25])]),
        "no_frames": status([tensor("seed", "UINT64", [1])]),
        "zero_frames": status([tensor("frames", "INT32", [0])]),
        "bad_primer": status([tensor("frames", "INT32", [4]), tensor("primer_midi", "BYTES", [b"not midi"])]),
        "bad_melody": status([tensor("melody_midi", "BYTES", [b"not midi"])]),
        "unknown_input": status([tensor("frames", "INT32", [4]), tensor("mood", "FP32", [1.0])]),
        "unknown_output": status([tensor("frames", "INT32", [4])], outputs=[triton.InferRequestedOutput("audio")]),
        "unknown_model": status([tensor("frames", "INT32", [4])], model="no-such-model"),
    },
    "after_errors": client.infer(model, [tensor("frames", "INT32", [3])]).as_numpy("roll").shape[0],
}))
"#;

#[test]
fn tritonclient_composes_the_same_piece_as_the_composer_api() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start(ServerConfig::cpu(common::shipped_models())).await;
        let addr = server.addr;

        let primer_path = pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid");
        let primer = std::fs::read(&primer_path).unwrap();
        let primer_bytes = primer.clone();
        let url = addr.to_string();
        let seen = tokio::task::spawn_blocking(move || {
            pianoroll_tests::python_json(
                &python,
                TRITON_CLIENT,
                &[url.as_ref(), "lstm-nade".as_ref(), primer_path.as_os_str()],
            )
        })
        .await
        .unwrap();

        // The same request through pianoroll.v1.
        let generation = GenerateRequest {
            model: "lstm-nade".to_owned(),
            frames: 24,
            temperature: Some(0.9),
            seed: 77,
            primer: Some(Primer::PrimerMidi(primer)),
            chunk_frames: 0,
            ..Default::default()
        };
        let mut composer = ComposerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let mut stream = composer
            .generate(generation.clone())
            .await
            .unwrap()
            .into_inner();
        let mut frames: Vec<Vec<u32>> = Vec::new();
        while let Some(message) = stream.next().await {
            if let generate_response::Event::Chunk(chunk) = message.unwrap().event.unwrap() {
                frames.extend(chunk.frames.into_iter().map(|f| f.pitches));
            }
        }
        let composed = composer
            .compose(ComposeRequest {
                generation: Some(generation),
                png: false,
                audio: String::new(),
                count: 0,
            })
            .await
            .unwrap()
            .into_inner();

        assert_eq!(seen["live"], true);
        assert_eq!(seen["ready"], true);
        assert_eq!(seen["model_ready"], true);
        assert_eq!(seen["unknown_ready"], false);
        assert_eq!(seen["server"]["name"], "pianoroll");
        let metadata = &seen["metadata"];
        assert_eq!(metadata["versions"], serde_json::json!(["1"]));
        let inputs: Vec<(&str, &str)> = metadata["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap(), t["datatype"].as_str().unwrap()))
            .collect();
        assert_eq!(
            inputs,
            [
                ("frames", "INT32"),
                ("seed", "UINT64"),
                ("temperature", "FP32"),
                ("tempo_bpm", "FP64"),
                ("primer_midi", "BYTES"),
                ("key", "BYTES"),
                ("meter", "BYTES"),
                ("melody_midi", "BYTES")
            ]
        );
        // int64 shapes arrive as strings in the JSON form of protobuf.
        assert_eq!(metadata["outputs"][0]["name"], "roll");
        assert_eq!(
            metadata["outputs"][0]["shape"],
            serde_json::json!(["-1", "88"])
        );
        assert_eq!(seen["id"], "request-1");
        assert_eq!(seen["roll_dtype"], "uint8");
        assert_eq!(seen["roll_shape"], serde_json::json!([24, 88]));
        assert_eq!(seen["roll"], serde_json::json!(frames), "the same frames");
        let midi_hex: String = composed.midi.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(seen["midi"], midi_hex.as_str(), "the same MIDI file");
        assert_eq!(seen["silent_start"], 4);
        // A melody without frames: as many frames as the melody has.
        let melody_frames =
            pianoroll::read_midi(&primer_bytes, &pianoroll::RollSettings::benchmark())
                .unwrap()
                .roll
                .len();
        assert_eq!(seen["harmonized_frames"], melody_frames);

        let errors = seen["errors"].as_object().unwrap();
        let expect = |case: &str, code: &str, words: &str| {
            let got = errors[case].as_str().unwrap();
            assert!(
                got.starts_with(code) && got.contains(words),
                "{case}: expected {code} with {words:?}, got {got}"
            );
        };
        expect(
            "float_frames",
            "StatusCode.INVALID_ARGUMENT",
            "frames: datatype",
        );
        expect(
            "two_frames",
            "StatusCode.INVALID_ARGUMENT",
            "frames: shape [2]",
        );
        expect(
            "no_frames",
            "StatusCode.INVALID_ARGUMENT",
            "frames: missing",
        );
        expect(
            "zero_frames",
            "StatusCode.INVALID_ARGUMENT",
            "frames: must be at least 1",
        );
        expect("bad_primer", "StatusCode.INVALID_ARGUMENT", "primer_midi");
        expect("bad_melody", "StatusCode.INVALID_ARGUMENT", "melody_midi");
        expect("unknown_input", "StatusCode.INVALID_ARGUMENT", "\"mood\"");
        expect("unknown_output", "StatusCode.INVALID_ARGUMENT", "\"audio\"");
        expect("unknown_model", "StatusCode.NOT_FOUND", "no-such-model");
        assert_eq!(seen["after_errors"], 3, "the server still serves");

        server.stop().await;
    });
}
