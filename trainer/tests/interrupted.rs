//! A training run stopped anywhere (here: at each change it makes to its run folder, as a kill
//! would stop it) resumes to the same bytes as a run never stopped; a run folder whose files do
//! not belong together is refused by name; a resume cleans up what killed writes left.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use trainer::run::{FAIL_AT_WRITE_VARIABLE, FAILED_AT_WRITE_EXIT};

/// Three epochs of a tiny LSTM (a third of a second) with everything that carries state across
/// epochs: dropout (libtorch's generator), transposition (the shuffling generator), the weight
/// average (the optimiser's file). The rate is high enough that valid NLL does not fall every
/// epoch: epoch 2 is the best, so `best.safetensors` stays behind `last.safetensors` in epoch 3.
const RECIPE: &str = "model = \"lstm\"\nhidden = 8\nlayers = 1\ndropout_in = 0.2\n\
                      epochs = 3\nbatch_size = 2\nlr = 0.05\nschedule = \"constant\"\n\
                      warmup_steps = 0\ntranspose_augment = 2\nema_decay = 0.5\nseed = 3\n";

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    dataset: PathBuf,
    recipe: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let dataset = common::small_dataset(&root, 3);
        let recipe = root.join("tiny.toml");
        std::fs::write(&recipe, RECIPE).unwrap();
        Fixture {
            _dir: dir,
            root,
            dataset,
            recipe,
        }
    }

    /// A path for a run folder: every one is called `run`, in a folder of its own, because the
    /// curves name the run.
    fn run_folder(&self, label: &str) -> PathBuf {
        let parent = self.root.join(label);
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("run")
    }

    fn trainer(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
        command
            .env("OMP_NUM_THREADS", "1")
            .env_remove(FAIL_AT_WRITE_VARIABLE)
            .args(["train", "--device", "cpu"]);
        command
    }

    /// `trainer train` of a new run into `run`.
    fn new_run(&self, run: &Path) -> Command {
        let mut command = self.trainer();
        command
            .arg("--recipe")
            .arg(&self.recipe)
            .arg("--data")
            .arg(&self.dataset)
            .arg("--out")
            .arg(run);
        command
    }

    fn resume(&self, run: &Path) -> Command {
        let mut command = self.trainer();
        command.arg("--resume").arg(run);
        command
    }
}

fn output(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What a finished run folder holds, file by file, less what is measured rather than
/// computed (the timings in `metrics.csv` and in `last.json`'s row).
fn contents(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(run).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let kept = match name.as_str() {
            "metrics.csv" => String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|line| line.split(',').take(7).collect::<Vec<_>>().join(","))
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
            "last.json" => {
                let mut last: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let row = last["row"].as_object_mut().expect("last.json has its row");
                for timing in ["seconds", "train_frames_per_s", "eval_frames_per_s"] {
                    assert!(row.remove(timing).is_some(), "no {timing} in {last:?}");
                }
                serde_json::to_vec(&last).unwrap()
            }
            _ => bytes,
        };
        files.insert(name, kept);
    }
    files
}

fn assert_same_run(expected: &BTreeMap<String, Vec<u8>>, run: &Path, what: &str) {
    let actual = contents(run);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>(),
        "{what}: other files than the uninterrupted run's"
    );
    for (name, bytes) in expected {
        assert!(
            &actual[name] == bytes,
            "{what}: {name} differs from the uninterrupted run's"
        );
    }
}

/// For every N, the run is stopped just before its Nth change to the run folder becomes
/// visible (the Nth file written but not renamed into place, or the Nth rename not made), then
/// resumed: the first resume is itself stopped at its first change, the second runs to the
/// end. Every run ends with the uninterrupted run's files, bit for bit, and nothing else.
#[test]
fn a_run_stopped_at_any_write_resumes_to_the_same_bytes() {
    let fixture = Fixture::new();
    let whole = fixture.run_folder("whole");
    succeeded(
        "the uninterrupted run",
        &output(&mut fixture.new_run(&whole)),
    );
    let expected = contents(&whole);
    for file in [
        "best.safetensors",
        "last.safetensors",
        "last.optim.safetensors",
        "results.json",
    ] {
        assert!(expected.contains_key(file), "{file}: {:?}", expected.keys());
    }
    let rows = trainer::run::RunSummary::read(&whole).unwrap().rows;
    let best = trainer::run::RunFolder::new(&whole)
        .best_epoch()
        .unwrap()
        .unwrap();
    assert_eq!(
        (best.epoch, rows.len()),
        (2, 3),
        "the test needs a last epoch that is not the best: {rows:?}"
    );

    let started = Instant::now();
    let mut n = 1;
    loop {
        let run = fixture.run_folder(&format!("stopped-{n}"));
        let first = output(
            fixture
                .new_run(&run)
                .env(FAIL_AT_WRITE_VARIABLE, n.to_string()),
        );
        match first.status.code() {
            // N is past the run's last change: every change has been a stopping point.
            Some(0) => {
                assert_same_run(&expected, &run, "a run not stopped");
                break;
            }
            Some(FAILED_AT_WRITE_EXIT) => {}
            _ => panic!(
                "stopped at change {n}: {}",
                String::from_utf8_lossy(&first.stderr)
            ),
        }
        assert!(!run.join("results.json").exists(), "change {n}");
        if !run.exists() {
            // Stopped before the folder appeared: nothing to resume, start it again.
            succeeded(
                &format!("starting again after change {n}"),
                &output(&mut fixture.new_run(&run)),
            );
        } else {
            let second = output(fixture.resume(&run).env(FAIL_AT_WRITE_VARIABLE, "1"));
            assert_eq!(
                second.status.code(),
                Some(FAILED_AT_WRITE_EXIT),
                "a resume after change {n} changed nothing: {}",
                String::from_utf8_lossy(&second.stderr)
            );
            succeeded(
                &format!("the resume after change {n}"),
                &output(&mut fixture.resume(&run)),
            );
        }
        assert_same_run(&expected, &run, &format!("stopped at change {n}"));
        std::fs::remove_dir_all(&run).unwrap();
        n += 1;
        assert!(n < 100, "the run has not ended after {n} changes");
    }
    // A config, a metrics header, at least 7 changes an epoch, the results.
    assert!(n > 3 + 3 * 7, "only {} changes were stopping points", n - 1);
    eprintln!(
        "{} stopping points, {:.0} s",
        n - 1,
        started.elapsed().as_secs_f64()
    );
}

/// A run folder without a finished epoch (a run killed before its first epoch ended) resumes
/// from the start, as a new run in that folder would have run; `--out` on it points to
/// `--resume`.
#[test]
fn a_run_stopped_before_its_first_epoch_resumes_from_the_start() {
    let fixture = Fixture::new();
    let whole = fixture.run_folder("whole");
    succeeded(
        "the uninterrupted run",
        &output(&mut fixture.new_run(&whole)),
    );
    let early = fixture.run_folder("early");
    std::fs::create_dir(&early).unwrap();
    std::fs::copy(whole.join("config.json"), early.join("config.json")).unwrap();
    std::fs::write(early.join("metrics.csv"), "epoch,step\n").unwrap();

    let again = output(&mut fixture.new_run(&early));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("already exists") && stderr.contains("--resume"),
        "{stderr}"
    );
    succeeded("the resume", &output(&mut fixture.resume(&early)));
    assert_same_run(&contents(&whole), &early, "resumed from the start");
}

/// Checkpoint files of another epoch, put back by hand, are refused with an error naming them
/// and `last.json`, before any training; so is a `best.json` of another epoch.
#[test]
fn a_resume_refuses_files_of_another_epoch_by_name() {
    let fixture = Fixture::new();
    let run = fixture.run_folder("run");
    // Four epochs, stopped after the third, which is not the best (the second is).
    succeeded(
        "epoch 1",
        &output(
            fixture
                .new_run(&run)
                .args(["--epochs", "4", "--stop-after-epoch", "1"]),
        ),
    );
    let kept = fixture.root.join("kept");
    std::fs::create_dir(&kept).unwrap();
    for file in ["last.safetensors", "last.optim.safetensors", "best.json"] {
        std::fs::copy(run.join(file), kept.join(file)).unwrap();
    }
    succeeded(
        "epochs 2 and 3",
        &output(fixture.resume(&run).args(["--stop-after-epoch", "3"])),
    );
    let metrics = std::fs::read(run.join("metrics.csv")).unwrap();

    for file in ["last.safetensors", "last.optim.safetensors"] {
        let current = std::fs::read(run.join(file)).unwrap();
        std::fs::copy(kept.join(file), run.join(file)).unwrap();
        let refused = output(&mut fixture.resume(&run));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{file} of epoch 1 was accepted");
        assert!(
            stderr.contains(&run.join(file).display().to_string())
                && stderr.contains("last.json")
                && stderr.contains("epoch 3"),
            "{file}: {stderr}"
        );
        assert_eq!(
            std::fs::read(run.join("metrics.csv")).unwrap(),
            metrics,
            "{file}: a refused resume trained"
        );
        std::fs::write(run.join(file), current).unwrap();
    }

    // best.json of epoch 1 where epoch 2 was the best. (Had the last epoch been the best, the
    // resume would rewrite best.json from last.json, as it does after a kill.)
    let folder = trainer::run::RunFolder::new(&run);
    let progress = folder.progress().unwrap().unwrap();
    assert_eq!((progress.epoch, progress.best_epoch), (3, 2));
    assert_eq!(folder.best_epoch().unwrap().unwrap().epoch, 2);
    std::fs::copy(kept.join("best.json"), run.join("best.json")).unwrap();
    let refused = output(&mut fixture.resume(&run));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a best.json of another epoch");
    assert!(
        stderr.contains(&run.join("best.json").display().to_string()),
        "{stderr}"
    );
}

/// Temporary files of killed writes (`.partial-*`) and staged checkpoint files of an epoch that
/// never committed are removed by a resume; other files are left alone, and the run still ends
/// as an uninterrupted one.
#[test]
fn a_resume_removes_what_killed_writes_left() {
    let fixture = Fixture::new();
    let whole = fixture.run_folder("whole");
    succeeded(
        "the uninterrupted run",
        &output(&mut fixture.new_run(&whole)),
    );
    let run = fixture.run_folder("run");
    succeeded(
        "epoch 1",
        &output(fixture.new_run(&run).args(["--stop-after-epoch", "1"])),
    );
    let leftovers = [
        ".partial-Ab12Cd.safetensors",
        ".partial-x9Y8z7.json",
        ".partial-q1w2e3.csv",
        "epoch-2.last.safetensors",
        "epoch-2.last.optim.safetensors",
        "epoch-2.best.safetensors",
    ];
    for name in leftovers {
        std::fs::write(run.join(name), b"half a file").unwrap();
    }
    std::fs::write(run.join("notes.txt"), b"mine").unwrap();
    succeeded("the resume", &output(&mut fixture.resume(&run)));
    for name in leftovers {
        assert!(!run.join(name).exists(), "{name} is still there");
    }
    assert_eq!(std::fs::read(run.join("notes.txt")).unwrap(), b"mine");
    std::fs::remove_file(run.join("notes.txt")).unwrap();
    assert_same_run(&contents(&whole), &run, "resumed among leftovers");
}

/// A run folder of an earlier version, whose `last.json` has neither the epoch's row nor the
/// checksums, still resumes to the same run.
#[test]
fn a_run_folder_of_an_earlier_version_resumes() {
    let fixture = Fixture::new();
    let whole = fixture.run_folder("whole");
    succeeded(
        "the uninterrupted run",
        &output(&mut fixture.new_run(&whole)),
    );
    let run = fixture.run_folder("old");
    succeeded(
        "epoch 1",
        &output(fixture.new_run(&run).args(["--stop-after-epoch", "1"])),
    );
    let path = run.join("last.json");
    let mut last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let fields = last.as_object_mut().unwrap();
    assert!(fields.remove("row").is_some() && fields.remove("checksums").is_some());
    std::fs::write(&path, serde_json::to_vec_pretty(&last).unwrap()).unwrap();
    succeeded("the resume", &output(&mut fixture.resume(&run)));
    assert_same_run(&contents(&whole), &run, "an old run folder resumed");
}
