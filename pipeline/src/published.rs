//! `pipeline import-mat`: the published benchmark piano rolls (a MAT-file with cell arrays
//! `traindata`, `validdata`, `testdata`, as Boulanger-Lewandowski et al. 2012 distributed them)
//! → a dataset folder like `pipeline build` writes, so the trainer scores and trains on the
//! exact rolls behind the published figures.
//!
//! The rolls are taken as they are: eighth-note frames, each piece transposed by the
//! publishers' own rule (most minor pieces as their relative major; the project's `to_c`
//! puts them in C minor). The dataset says `benchmark` settings, so models trained on either
//! score on the other, and the manifest's `split_source` names the file and its rule. Pieces
//! have no names in the file: their ids are `SPLIT/NNN`, in file order.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::dataset::{
    BuildError, InputRecord, MANIFEST_FILE, Manifest, Split, SplitSource, SplitSummary, hex,
};
use crate::matfile::{self, MatError};
use crate::schema::{PieceRecord, SCHEMA_VERSION, SplitWriter};
use pianoroll::atomic;
use pianoroll::grid::RollSettings;
use pianoroll::roll::{KEY_COUNT, LOWEST_PITCH};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {error}")]
    Mat { path: String, error: MatError },
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The cell array of each split.
pub fn variable_of(split: Split) -> &'static str {
    match split {
        Split::Train => "traindata",
        Split::Valid => "validdata",
        Split::Test => "testdata",
    }
}

/// Import the MAT-file `mat` into the dataset folder `output` (replaced only with `force`, and
/// only if it is a dataset). No compressed element may inflate to more than
/// `max_element_bytes` ([`matfile::DEFAULT_MAX_ELEMENT_BYTES`] unless the user says otherwise).
pub fn import(
    mat: &Path,
    output: &Path,
    force: bool,
    max_element_bytes: usize,
) -> Result<Manifest, ImportError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |error| BuildError::Io { path, error }
    };
    crate::dataset::check_replaceable(output, force)?;
    let bytes = std::fs::read(mat).map_err(io_error(mat))?;
    let mat_error = |error| ImportError::Mat {
        path: mat.display().to_string(),
        error,
    };
    let variables = matfile::read_variables(&bytes, max_element_bytes).map_err(mat_error)?;
    let settings = RollSettings::benchmark();
    let staging = atomic::staging_beside(output).map_err(io_error(output))?;
    let mut splits = BTreeMap::new();
    for split in Split::ALL {
        let variable = variable_of(split);
        let rolls = matfile::cell_rolls(&variables, variable).map_err(mat_error)?;
        let file = split.file_name();
        let mut summary = SplitSummary {
            file: file.clone(),
            ..Default::default()
        };
        let pieces: Vec<PieceRecord> = rolls
            .into_iter()
            .enumerate()
            .map(|(index, roll)| {
                summary.pieces += 1;
                summary.frames += roll.len() as u64;
                let notes = roll.note_runs().len() as u64;
                summary.notes.notes += notes;
                summary.notes.kept += notes;
                PieceRecord {
                    id: format!("{}/{index:03}", split.as_str()),
                    split: split.as_str().to_owned(),
                    source: format!("{variable}{{{}}}", index + 1),
                    title: None,
                    key: None,
                    key_source: "published".to_owned(),
                    transpose: 0,
                    roll,
                }
            })
            .collect();
        *summary.transpositions.entry(0).or_default() += summary.pieces;
        let mut writer = SplitWriter::create(&staging.path().join(&file), &settings)
            .map_err(BuildError::from)?;
        writer.write(&pieces).map_err(BuildError::from)?;
        writer.finish().map_err(BuildError::from)?;
        splits.insert(split, summary);
    }
    let name = mat.file_name().map_or_else(
        || mat.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let sha256 = hex(&Sha256::digest(&bytes));
    let manifest = Manifest {
        format: Manifest::FORMAT.into(),
        schema_version: SCHEMA_VERSION.into(),
        tool: env!("CARGO_PKG_NAME").into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        settings,
        lowest_pitch: LOWEST_PITCH,
        key_count: KEY_COUNT,
        split_source: SplitSource::Published {
            file: name.clone(),
            variables: Split::ALL.map(|s| variable_of(s).to_owned()).to_vec(),
        },
        pieces: splits.values().map(|s| s.pieces).sum(),
        splits,
        files: 1,
        errors: 0,
        inputs_sha256: sha256.clone(),
        inputs: vec![InputRecord {
            path: name,
            split: Split::Train,
            bytes: bytes.len() as u64,
            sha256: Some(sha256),
            error: None,
        }],
    };
    let manifest_path = staging.path().join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    atomic::write_file(&manifest_path, &json).map_err(io_error(&manifest_path))?;
    crate::dataset::check_replaceable(output, force)?;
    atomic::publish_folder(staging, output).map_err(io_error(output))?;
    Ok(manifest)
}
