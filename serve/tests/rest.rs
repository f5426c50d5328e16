//! The Open Inference Protocol over HTTP/JSON (`--rest`) and Triton's extensions (model
//! configuration, statistics, repository index), driven by clients no one here wrote: PyPI's
//! `tritonclient[http]` and `tritonclient[grpc]`. A piece asked for over REST, in binary or in
//! JSON, equals the same request over gRPC; both transports report the same statistics.

use serve::server::ServerConfig;

mod common;
use common::Running;

const TRITON_CLIENTS: &str = r#"
import base64, json, sys
import numpy as np
import tritonclient.grpc as grpc
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

rest_url, grpc_url, model, primer_path = sys.argv[1:5]
rest = http.InferenceServerClient(url=rest_url)
remote = grpc.InferenceServerClient(url=grpc_url)
primer = open(primer_path, "rb").read()
DTYPES = {"INT32": np.int32, "UINT64": np.uint64, "FP32": np.float32, "FP64": np.float64,
          "BYTES": np.object_}

def tensor(module, name, datatype, values, binary=True):
    t = module.InferInput(name, [len(values)], datatype)
    array = np.array(values, dtype=DTYPES[datatype])
    if module is http:
        t.set_data_from_numpy(array, binary_data=binary)
    else:
        t.set_data_from_numpy(array)
    return t

def inputs(module, binary=True, primer_value=primer):
    return [tensor(module, "frames", "INT32", [24], binary),
            tensor(module, "seed", "UINT64", [77], binary),
            tensor(module, "temperature", "FP32", [0.9], binary),
            tensor(module, "primer_midi", "BYTES", [primer_value], binary)]

def rest_error(inputs, model=model, outputs=None):
    try:
        rest.infer(model, inputs, outputs=outputs)
        return "OK"
    except InferenceServerException as e:
        return e.status() + ": " + e.message()

def piece(result):
    roll = result.as_numpy("roll")
    return {"dtype": str(roll.dtype), "shape": list(roll.shape),
            "roll": [[int(21 + k) for k in np.flatnonzero(frame)] for frame in roll]}

out = {}
via_grpc = remote.infer(model, inputs(grpc), request_id="grpc-1")
out["grpc"] = piece(via_grpc)
out["grpc_midi"] = via_grpc.as_numpy("midi")[0].hex()

binary = rest.infer(model, inputs(http), request_id="rest-1",
                    outputs=[http.InferRequestedOutput("roll", binary_data=True),
                             http.InferRequestedOutput("midi", binary_data=True)])
out["binary"] = piece(binary)
out["binary_midi"] = binary.as_numpy("midi")[0].hex()
out["binary_id"] = binary.get_response()["id"]

# JSON both ways: BYTES as base64 strings.
as_text = base64.b64encode(primer).decode()
json_result = rest.infer(model, inputs(http, binary=False, primer_value=as_text),
                         outputs=[http.InferRequestedOutput("roll", binary_data=False),
                                  http.InferRequestedOutput("midi", binary_data=False)])
out["json"] = piece(json_result)
midi_json = [o for o in json_result.get_response()["outputs"] if o["name"] == "midi"][0]
out["json_midi"] = base64.b64decode(midi_json["data"][0]).hex()
out["json_midi_parameters"] = midi_json.get("parameters")

# No outputs named: tritonclient asks for all of them as binary data.
out["default_outputs"] = [o["name"] for o in
                          rest.infer(model, [tensor(http, "frames", "INT32", [3])]).get_response()["outputs"]]

out["errors"] = {
    "float_frames": rest_error([tensor(http, "frames", "FP32", [24.0])]),
    "unknown_model": rest_error([tensor(http, "frames", "INT32", [4])], model="no-such-model"),
    "bad_primer": rest_error([tensor(http, "frames", "INT32", [4]),
                              tensor(http, "primer_midi", "BYTES", [b"not midi"])]),
    "text_primer": rest_error([tensor(http, "frames", "INT32", [4]),
                               tensor(http, "primer_midi", "BYTES", ["not base64!"], binary=False)]),
    "unknown_output": rest_error([tensor(http, "frames", "INT32", [4])],
                                 outputs=[http.InferRequestedOutput("audio")]),
}
out["live"] = rest.is_server_live()
out["ready"] = rest.is_server_ready()
out["model_ready"] = rest.is_model_ready(model)
out["model_ready_v1"] = rest.is_model_ready(model, model_version="1")
out["unknown_ready"] = rest.is_model_ready("no-such-model")
out["server"] = rest.get_server_metadata()
out["metadata"] = rest.get_model_metadata(model)
out["config_rest"] = rest.get_model_config(model)
out["config_grpc"] = remote.get_model_config(model, as_json=True)["config"]
out["index_rest"] = rest.get_model_repository_index()
out["index_grpc"] = remote.get_model_repository_index(as_json=True)["models"]
out["stats_rest"] = rest.get_inference_statistics(model)["model_stats"]
out["stats_grpc"] = remote.get_inference_statistics(model, as_json=True)["model_stats"]
out["stats_all"] = [s["name"] for s in rest.get_inference_statistics()["model_stats"]]
print(json.dumps(out))
"#;

/// A models folder with the shipped models and one folder that cannot load.
fn models_with_a_broken_one() -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    let shipped = common::shipped_models();
    for model in ["lstm-nade", "rwkv-nade"] {
        let to = folder.path().join(model);
        std::fs::create_dir(&to).unwrap();
        for file in ["model.onnx", "model.json"] {
            std::fs::copy(shipped.join(model).join(file), to.join(file)).unwrap();
        }
    }
    let broken = folder.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("model.json"), "{ not a card").unwrap();
    std::fs::write(broken.join("model.onnx"), "not onnx").unwrap();
    folder
}

#[test]
fn tritonclient_over_rest_composes_what_grpc_composes() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    let models = models_with_a_broken_one();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Running::start_with_rest(ServerConfig::cpu(models.path().to_owned())).await;
        let primer = pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid");
        let (rest, grpc) = (server.rest.unwrap().to_string(), server.addr.to_string());
        let seen = tokio::task::spawn_blocking(move || {
            pianoroll_tests::python_json(
                &python,
                TRITON_CLIENTS,
                &[
                    rest.as_ref(),
                    grpc.as_ref(),
                    "lstm-nade".as_ref(),
                    primer.as_os_str(),
                ],
            )
        })
        .await
        .unwrap();

        // The same piece over gRPC, REST binary and REST JSON.
        assert_eq!(seen["grpc"]["shape"], serde_json::json!([24, 88]));
        assert_eq!(seen["grpc"]["dtype"], "uint8");
        for form in ["binary", "json"] {
            assert_eq!(seen[form], seen["grpc"], "{form}: the same frames");
            assert_eq!(
                seen[format!("{form}_midi")],
                seen["grpc_midi"],
                "{form}: the same MIDI file"
            );
        }
        assert!(seen["grpc_midi"].as_str().unwrap().starts_with("4d546864"));
        assert_eq!(seen["binary_id"], "rest-1");
        assert_eq!(
            seen["json_midi_parameters"],
            serde_json::json!({"encoding": "base64"})
        );
        assert_eq!(seen["default_outputs"], serde_json::json!(["roll", "midi"]));

        let errors = seen["errors"].as_object().unwrap();
        let expect = |case: &str, status: &str, words: &str| {
            let got = errors[case].as_str().unwrap();
            assert!(
                got.starts_with(status) && got.contains(words),
                "{case}: expected {status} with {words:?}, got {got}"
            );
        };
        expect("float_frames", "400", "frames: datatype");
        expect("unknown_model", "404", "no-such-model");
        expect("bad_primer", "400", "primer_midi");
        expect("text_primer", "400", "base64");
        expect("unknown_output", "400", "\"audio\"");

        for probe in ["live", "ready", "model_ready", "model_ready_v1"] {
            assert_eq!(seen[probe], true, "{probe}");
        }
        assert_eq!(seen["unknown_ready"], false);
        assert_eq!(seen["server"]["name"], "pianoroll");
        let extensions = seen["server"]["extensions"].as_array().unwrap();
        for extension in ["model_configuration", "statistics", "model_repository"] {
            assert!(extensions.iter().any(|e| e == extension), "{extension}");
        }
        assert_eq!(
            seen["metadata"]["outputs"][0]["shape"],
            serde_json::json!([-1, 88])
        );

        // The configuration, the same from both transports.
        for transport in ["config_rest", "config_grpc"] {
            let config = &seen[transport];
            assert_eq!(config["name"], "lstm-nade", "{transport}");
            let inputs: Vec<(&str, &str)> = config["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap(),
                        t["data_type"].as_str().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                inputs,
                [
                    ("frames", "TYPE_INT32"),
                    ("seed", "TYPE_UINT64"),
                    ("temperature", "TYPE_FP32"),
                    ("tempo_bpm", "TYPE_FP64"),
                    ("primer_midi", "TYPE_STRING"),
                    ("key", "TYPE_STRING"),
                    ("meter", "TYPE_STRING"),
                    ("melody_midi", "TYPE_STRING")
                ],
                "{transport}"
            );
            assert_eq!(
                config["output"][0]["data_type"], "TYPE_UINT8",
                "{transport}"
            );
        }

        // The repository: both models ready, the broken folder unavailable with its reason.
        for transport in ["index_rest", "index_grpc"] {
            let index = seen[transport].as_array().unwrap();
            let state = |name: &str| {
                index
                    .iter()
                    .find(|m| m["name"] == name)
                    .unwrap_or_else(|| panic!("{transport}: no {name} in {index:?}"))
            };
            assert_eq!(state("lstm-nade")["state"], "READY", "{transport}");
            assert_eq!(state("rwkv-nade")["state"], "READY", "{transport}");
            assert_eq!(state("broken")["state"], "UNAVAILABLE", "{transport}");
            assert!(
                state("broken")["reason"]
                    .as_str()
                    .unwrap()
                    .contains("model.json"),
                "{transport}: {:?}",
                state("broken")
            );
        }

        // Statistics: 4 pieces composed (one over gRPC, three over REST), 5 refused; the
        // unknown model's refusal is not the model's. gRPC's JSON writes uint64 as strings.
        let number = |v: &serde_json::Value| -> u64 {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0)
        };
        for transport in ["stats_rest", "stats_grpc"] {
            let stats = &seen[transport][0];
            assert_eq!(stats["name"], "lstm-nade");
            assert_eq!(number(&stats["inference_count"]), 4, "{transport}");
            let inference = &stats["inference_stats"];
            assert_eq!(number(&inference["success"]["count"]), 4, "{transport}");
            assert_eq!(number(&inference["fail"]["count"]), 4, "{transport}");
            assert!(number(&inference["success"]["ns"]) > 0, "{transport}");
            // At least one step a generated frame of the longest piece.
            assert!(number(&stats["execution_count"]) >= 24, "{transport}");
            assert!(
                number(&stats["last_inference"]) > 1_700_000_000_000,
                "{transport}"
            );
        }
        assert_eq!(
            seen["stats_all"],
            serde_json::json!(["lstm-nade", "rwkv-nade"])
        );

        server.stop().await;
    });
}

#[test]
fn rest_needs_the_token_refuses_bad_bodies_and_keeps_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = ServerConfig::cpu(common::shipped_models());
        config.token = Some("s3cret".to_owned());
        config.limits.max_message_bytes = 64 << 10;
        let server = Running::start_with_rest(config).await;
        let rest = server.rest.unwrap();
        let ask = move |method: &'static str, path: &'static str, token: bool, body: Vec<u8>| {
            tokio::task::spawn_blocking(move || {
                let headers: &[(&str, &str)] = if token {
                    &[("Authorization", "Bearer s3cret")]
                } else {
                    &[]
                };
                pianoroll_tests::http_request(rest, method, path, headers, &body)
            })
        };
        let infer = br#"{"inputs":[{"name":"frames","shape":[1],"datatype":"INT32","data":[2]}]}"#;

        // Probes are open; everything else needs the token.
        assert_eq!(
            ask("GET", "/v2/health/live", false, vec![])
                .await
                .unwrap()
                .status,
            200
        );
        assert_eq!(
            ask("GET", "/v2/health/ready", false, vec![])
                .await
                .unwrap()
                .status,
            200
        );
        for (method, path) in [
            ("GET", "/v2"),
            ("GET", "/v2/models/lstm-nade"),
            ("GET", "/v2/models/stats"),
            ("POST", "/v2/repository/index"),
        ] {
            let refused = ask(method, path, false, vec![]).await.unwrap();
            assert_eq!(refused.status, 401, "{method} {path}: {}", refused.head);
        }
        let refused = ask("POST", "/v2/models/lstm-nade/infer", false, infer.to_vec())
            .await
            .unwrap();
        assert_eq!(refused.status, 401);

        // Bad requests: the right status, a JSON error naming what was wrong.
        let cases: [(&str, &str, Vec<u8>, u16, &str); 6] = [
            (
                "POST",
                "/v2/models/lstm-nade/infer",
                b"{".to_vec(),
                400,
                "request JSON",
            ),
            (
                "POST",
                "/v2/models/lstm-nade/infer",
                vec![b' '; 65 << 10],
                413,
                "length limit",
            ),
            (
                "POST",
                "/v2/models/nobody/infer",
                infer.to_vec(),
                404,
                "nobody",
            ),
            (
                "GET",
                "/v2/models/lstm-nade/versions/2",
                vec![],
                404,
                "version 1 only",
            ),
            ("GET", "/v2/nowhere", vec![], 404, "no such endpoint"),
            (
                "GET",
                "/v2/models/lstm-nade/infer",
                vec![],
                405,
                "GET is not a method",
            ),
        ];
        for (method, path, body, status, words) in cases {
            let answer = ask(method, path, true, body).await.unwrap();
            assert_eq!(answer.status, status, "{method} {path}: {}", answer.head);
            let error = answer.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains(words), "{method} {path}: {error}");
        }

        // Text inputs are text in JSON, as the protocol has BYTES there.
        let in_d = br#"{"inputs":[{"name":"frames","shape":[1],"datatype":"INT32","data":[2]},
            {"name":"key","shape":[1],"datatype":"BYTES","data":["D"]},
            {"name":"meter","shape":[1],"datatype":"BYTES","data":["6/8"]}],
            "outputs":[{"name":"roll"}]}"#;
        let answer = ask("POST", "/v2/models/lstm-nade/infer", true, in_d.to_vec())
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(
            answer.json()["outputs"][0]["shape"],
            serde_json::json!([2, 88])
        );

        // And it still composes, in JSON.
        let answer = ask("POST", "/v2/models/lstm-nade/infer", true, infer.to_vec())
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.head);
        let body = answer.json();
        assert_eq!(body["outputs"][0]["name"], "roll");
        assert_eq!(body["outputs"][0]["shape"], serde_json::json!([2, 88]));
        assert_eq!(body["outputs"][0]["data"].as_array().unwrap().len(), 2 * 88);

        // Counted in the statistics (the body over the limit and the bad JSON were the
        // model's failures; the unknown model's was not) and in the metrics.
        let stats = ask("GET", "/v2/models/lstm-nade/stats", true, vec![])
            .await
            .unwrap()
            .json();
        let inference = &stats["model_stats"][0]["inference_stats"];
        assert_eq!(inference["success"]["count"], 2, "{stats}");
        assert_eq!(inference["fail"]["count"], 2, "{stats}");
        let metrics = server.metrics.unwrap();
        let metrics = tokio::task::spawn_blocking(move || {
            pianoroll_tests::http_request(
                metrics,
                "GET",
                "/metrics",
                &[("Authorization", "Bearer s3cret")],
                b"",
            )
        })
        .await
        .unwrap();
        let metrics = String::from_utf8(metrics.body).unwrap();
        for line in [
            r#"method="ModelInfer",model="lstm-nade",code="Ok"} 2"#,
            r#"method="ModelInfer",model="lstm-nade",code="InvalidArgument"} 1"#,
            r#"method="ModelInfer",model="lstm-nade",code="ResourceExhausted"} 1"#,
            r#"method="ModelInfer",model="(unknown)",code="NotFound"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
        server.stop().await;
    });
}
