//! The two ways a batch goes through a model ([`serve::step`]) on the shipped models: the
//! bucketed way (padded shapes, buffers bound in place, states kept between frames, the way
//! CUDA runs) gives every row exactly what the direct way gives, and exactly what that row gives
//! alone, while generations join and leave; and a server stepping bucketed, with powers of two
//! or one fixed shape, streams the same frames as one stepping directly.

mod common;

use common::{Running, shipped_models};
use pianoroll::KEY_COUNT;
use proto::card::{GRAPH_FILE, ModelCard};
use proto::pianoroll_v1::composer_client::ComposerClient;
use proto::pianoroll_v1::{
    Frame, Frames, GenerateRequest, ListModelsRequest, generate_request, generate_response,
};
use serve::runtime::{Device, Provider, init, session};
use serve::server::ServerConfig;
use serve::step::{StepMode, StepOptions, Stepper};
use tokio_stream::StreamExt;

/// Which generations run in each step: joins, leaves, growth past a power of two (shapes 1, 4,
/// 8, 2, 16) and a step where the same rows come back in another order. A generation that left
/// never comes back, as in the batcher (its ids are never reused).
fn schedule() -> Vec<Vec<u64>> {
    vec![
        vec![1],
        vec![1],
        vec![1, 2, 3],
        vec![1, 2, 3],
        vec![2, 3, 4, 5, 6],
        vec![2, 3, 4, 5, 6],
        vec![6, 5, 4, 3, 2],
        vec![4, 6],
        vec![4, 6],
        [4, 6].into_iter().chain(7..=15).collect(),
        [4, 6].into_iter().chain(7..=15).collect(),
    ]
}

/// Generation `id`'s input at its `step`-th frame: a frame, uniforms and its temperature, all
/// from the id and step alone, so a row gets the same inputs in any batch.
fn inputs(id: u64, step: usize) -> (Vec<f32>, Vec<f32>, f32) {
    let mut state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64 + 1);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let frame = (0..KEY_COUNT)
        .map(|_| if next() % 16 == 0 { 1.0 } else { 0.0 })
        .collect();
    let uniforms = (0..KEY_COUNT)
        .map(|_| (next() % 10_000) as f32 / 10_000.0)
        .collect();
    (frame, uniforms, 0.8 + 0.1 * (id % 4) as f32)
}

type Sampled = std::collections::BTreeMap<u64, Vec<Vec<f32>>>;

/// Run `schedule` through a fresh stepper of `model` on the CPU: each id's sampled frames.
fn run(model: &str, options: &StepOptions, schedule: &[Vec<u64>]) -> Sampled {
    run_on(Device::Cpu, model, options, schedule)
}

/// Run `schedule` through a fresh stepper of `model` on `device` (CPU or CUDA, not auto).
fn run_on(device: Device, model: &str, options: &StepOptions, schedule: &[Vec<u64>]) -> Sampled {
    let folder = shipped_models().join(model);
    let environment = init(None).unwrap();
    let (session, provider) = session(
        environment,
        &folder.join(GRAPH_FILE),
        device,
        1,
        options.cuda_graphs,
    )
    .unwrap();
    let expected = if device == Device::Cuda {
        Provider::Cuda
    } else {
        Provider::Cpu
    };
    assert_eq!(provider, expected);
    let card = ModelCard::read(&folder).unwrap();
    let mut stepper = Stepper::new(session, card, provider, options).unwrap();
    assert_eq!(stepper.mode(), options.mode);
    let mut steps_taken = std::collections::BTreeMap::<u64, usize>::new();
    let mut sampled = std::collections::BTreeMap::<u64, Vec<Vec<f32>>>::new();
    for ids in schedule {
        let (mut frames, mut uniforms, mut temperatures) = (Vec::new(), Vec::new(), Vec::new());
        for &id in ids {
            let step = steps_taken.entry(id).or_default();
            let (frame, uniform, temperature) = inputs(id, *step);
            *step += 1;
            frames.extend(frame);
            uniforms.extend(uniform);
            temperatures.push(temperature);
        }
        let next = stepper
            .step(ids, &frames, &uniforms, &temperatures)
            .unwrap();
        assert_eq!(next.len(), ids.len() * KEY_COUNT);
        for (row, &id) in ids.iter().enumerate() {
            let frame = next[row * KEY_COUNT..(row + 1) * KEY_COUNT].to_vec();
            assert!(
                frame.iter().all(|&v| v == 0.0 || v == 1.0),
                "{model}: {frame:?}"
            );
            sampled.entry(id).or_default().push(frame);
        }
    }
    sampled
}

fn options(mode: StepMode, batch_rows: Option<usize>) -> StepOptions {
    StepOptions {
        mode,
        batch_rows,
        cuda_graphs: true,
    }
}

/// Whether ONNX Runtime's CUDA provider works here; says why a test is skipped when not.
fn cuda_usable() -> bool {
    let environment = init(None).unwrap();
    let graph = shipped_models().join("lstm-nade").join(GRAPH_FILE);
    match session(environment, &graph, Device::Cuda, 1, false) {
        Ok(_) => true,
        Err(error) => {
            eprintln!(
                "skipped: ONNX Runtime's CUDA provider is not usable here ({error}); \
                 scripts/gpu-session/measure.sh runs this on a GPU machine"
            );
            false
        }
    }
}

/// On CUDA (skipped with a message where there is none): replaying the captured CUDA graphs
/// gives what launching each kernel gives; the sampled keys are the CPU's in nearly every
/// place (logits differ in their last bits, so a uniform that close to its probability can
/// flip); and with one shape for every batch, each row is what it is alone in that shape, bit
/// for bit: a seed gives the same music whatever else runs.
#[test]
fn on_cuda_graphs_replay_the_step_and_one_shape_makes_rows_independent() {
    if !cuda_usable() {
        return;
    }
    for model in ["lstm-nade", "rwkv-nade"] {
        let cpu = run(model, &options(StepMode::Direct, None), &schedule());
        let graphs = run_on(
            Device::Cuda,
            model,
            &options(StepMode::Bucketed, None),
            &schedule(),
        );
        let launched = run_on(
            Device::Cuda,
            model,
            &StepOptions {
                cuda_graphs: false,
                ..options(StepMode::Bucketed, None)
            },
            &schedule(),
        );
        assert_eq!(
            graphs, launched,
            "{model}: CUDA graphs against kernels launched"
        );
        let (mut same, mut all) = (0, 0);
        for (id, frames) in &cpu {
            for (a, b) in frames.iter().flatten().zip(graphs[id].iter().flatten()) {
                same += usize::from(a == b);
                all += 1;
            }
        }
        assert!(
            same as f64 >= 0.99 * all as f64,
            "{model}: CUDA and CPU agree on {same} of {all} keys"
        );
        let fixed = options(StepMode::Bucketed, Some(16));
        let together = run_on(Device::Cuda, model, &fixed, &schedule());
        for (&id, frames) in &together {
            let alone = run_on(Device::Cuda, model, &fixed, &vec![vec![id]; frames.len()]);
            assert_eq!(
                &alone[&id], frames,
                "{model}: generation {id} alone, 16 rows"
            );
        }
    }
}

#[test]
fn bucketed_rows_equal_direct_rows_and_each_row_alone() {
    for model in ["lstm-nade", "rwkv-nade"] {
        let direct = run(model, &options(StepMode::Direct, None), &schedule());
        let bucketed = run(model, &options(StepMode::Bucketed, None), &schedule());
        let fixed = run(model, &options(StepMode::Bucketed, Some(16)), &schedule());
        assert_eq!(bucketed, direct, "{model}: bucketed against direct");
        assert_eq!(
            fixed, direct,
            "{model}: one shape of 16 rows against direct"
        );
        let mut sounding = 0;
        for (&id, frames) in &direct {
            // The same id's steps with nothing else in the batch.
            let alone_schedule: Vec<Vec<u64>> = vec![vec![id]; frames.len()];
            let alone = run(model, &options(StepMode::Bucketed, None), &alone_schedule);
            assert_eq!(&alone[&id], frames, "{model}: generation {id} alone");
            sounding += frames.iter().flatten().filter(|&&v| v == 1.0).count();
        }
        // The comparison is of music, not of silence.
        assert!(sounding > 20, "{model}: {sounding} keys on in all");
    }
}

#[test]
fn a_step_with_mismatched_inputs_is_refused() {
    let folder = shipped_models().join("lstm-nade");
    let environment = init(None).unwrap();
    let (session, provider) =
        session(environment, &folder.join(GRAPH_FILE), Device::Cpu, 1, false).unwrap();
    let card = ModelCard::read(&folder).unwrap();
    let mut stepper =
        Stepper::new(session, card, provider, &options(StepMode::Bucketed, None)).unwrap();
    let error = stepper
        .step(
            &[1, 2],
            &[0.0; KEY_COUNT],
            &[0.0; 2 * KEY_COUNT],
            &[1.0, 1.0],
        )
        .unwrap_err();
    assert!(error.contains("88 frame values"), "{error}");
}

/// Eight concurrent streams (seeds 0..8, one with a primer) from a server stepping the way
/// `step` says, which `ListModels` reports as `described`.
async fn streams(step: StepOptions, max_concurrent: usize, described: &str) -> Vec<Vec<Vec<u32>>> {
    let mut config = ServerConfig {
        step,
        ..ServerConfig::cpu(shipped_models())
    };
    config.limits.max_concurrent = max_concurrent;
    let server = Running::start(config).await;
    let addr = server.addr;
    let mut client = ComposerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let models = client
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models.len(), 2);
    for model in &models {
        assert_eq!(model.step, described, "{}", model.name);
        let invariance = model.batch_invariance.unwrap();
        assert!(invariance.bit_identical, "{}: {invariance:?}", model.name);
        assert_eq!(
            invariance.padded_to as usize,
            step.batch_rows.unwrap_or(0),
            "{}",
            model.name
        );
    }
    let tasks: Vec<_> = (0..8u64)
        .map(|seed| {
            tokio::spawn(async move {
                let mut client = ComposerClient::connect(format!("http://{addr}"))
                    .await
                    .unwrap();
                let request = GenerateRequest {
                    model: if seed % 2 == 0 {
                        "lstm-nade"
                    } else {
                        "rwkv-nade"
                    }
                    .into(),
                    // Different lengths: generations leave the batch at different frames.
                    frames: 24 + 8 * seed as u32,
                    seed,
                    primer: (seed == 3).then(|| {
                        generate_request::Primer::PrimerFrames(Frames {
                            frames: vec![Frame {
                                pitches: vec![60, 64, 67],
                            }],
                        })
                    }),
                    ..Default::default()
                };
                let mut stream = client.generate(request).await.unwrap().into_inner();
                let mut frames = Vec::new();
                while let Some(message) = stream.next().await {
                    if let Some(generate_response::Event::Chunk(chunk)) = message.unwrap().event {
                        frames.extend(chunk.frames.into_iter().map(|f| f.pitches));
                    }
                }
                frames
            })
        })
        .collect();
    let mut pieces = Vec::new();
    for task in tasks {
        pieces.push(task.await.unwrap());
    }
    server.stop().await;
    pieces
}

#[test]
fn servers_stepping_bucketed_stream_what_direct_ones_do() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let direct = streams(options(StepMode::Direct, None), 256, "direct").await;
        assert!(direct.iter().all(|piece| !piece.is_empty()));
        assert!(
            direct.iter().flatten().any(|frame| !frame.is_empty()),
            "some notes sound"
        );
        let bucketed = streams(
            options(StepMode::Bucketed, None),
            256,
            "bucketed (powers of two)",
        )
        .await;
        assert_eq!(bucketed, direct, "powers of two");
        let fixed = streams(
            options(StepMode::Bucketed, Some(8)),
            8,
            "bucketed (one shape of 8 rows)",
        )
        .await;
        assert_eq!(fixed, direct, "one shape of 8 rows");
    });
}

#[test]
fn one_shape_smaller_than_the_concurrent_limit_is_refused() {
    let config = ServerConfig {
        step: options(StepMode::Bucketed, Some(4)),
        ..ServerConfig::cpu(shipped_models())
    };
    let error = serve::server::Server::load(config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("--batch-rows 4") && error.contains("--max-concurrent 256"),
        "{error}"
    );
}
