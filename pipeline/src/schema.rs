//! The dataset's Arrow schema: one row per piece, one IPC file per split.
//!
//! | column       | Arrow type              | meaning                                              |
//! |--------------|-------------------------|------------------------------------------------------|
//! | `id`         | Utf8                    | unique id: the source path without its extension     |
//! | `split`      | Utf8                    | `train`, `valid` or `test`                           |
//! | `source`     | Utf8                    | path of the MIDI file, relative to the input folder  |
//! | `title`      | Utf8, nullable          | sequence / first track name, if the file has one     |
//! | `num_frames` | UInt32                  | length of the roll                                   |
//! | `key`        | Utf8, nullable          | key as written, e.g. `D major` (null when unknown)   |
//! | `key_source` | Utf8                    | `signature`, `estimated` or `unknown`                |
//! | `transpose`  | Int8                    | semitones the piece was moved by                     |
//! | `roll`       | List<List<UInt8>>       | per frame, the sounding MIDI pitches, ascending      |
//!
//! The roll is a list of frames, each the list of MIDI pitches (21..=108) that are on: sparse
//! (about 4 of 88 keys sound at once in Nottingham, so the whole set is about 2 MB), and plain
//! nested lists that polars, pyarrow and pandas read without any custom decoding.
//!
//! The schema metadata records the schema version, the grid and transposition
//! ([`RollSettings`] as JSON) and the pitch range, so a reader can refuse a dataset made on a
//! different grid.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, ListBuilder, RecordBatch, StringArray, UInt8Builder,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef, UInt8Type, UInt32Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;

use pianoroll::grid::RollSettings;
use pianoroll::roll::{Frame, KEY_COUNT, LOWEST_PITCH, PianoRoll};

pub const SCHEMA_VERSION: &str = "1";
const META_VERSION: &str = "pianoroll.schema_version";
const META_SETTINGS: &str = "pianoroll.roll_settings";
const META_LOWEST_PITCH: &str = "pianoroll.lowest_pitch";
const META_KEY_COUNT: &str = "pianoroll.key_count";

/// One piece: a dataset row.
#[derive(Clone, Debug, PartialEq)]
pub struct PieceRecord {
    pub id: String,
    pub split: String,
    pub source: String,
    pub title: Option<String>,
    pub key: Option<String>,
    pub key_source: String,
    pub transpose: i8,
    pub roll: PianoRoll,
}

/// Reading or writing a dataset file failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: Arrow IPC: {error}")]
    Arrow {
        path: PathBuf,
        error: arrow::error::ArrowError,
    },
    #[error("{path}: not a pianoroll dataset file: {reason}")]
    Schema { path: PathBuf, reason: String },
}

fn item(data_type: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", data_type, false))
}

fn roll_type() -> DataType {
    DataType::List(item(DataType::List(item(DataType::UInt8))))
}

/// The schema of every split file, with `settings` in its metadata.
pub fn dataset_schema(settings: &RollSettings) -> Schema {
    let fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("num_frames", DataType::UInt32, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("key_source", DataType::Utf8, false),
        Field::new("transpose", DataType::Int8, false),
        Field::new("roll", roll_type(), false),
    ];
    let metadata = HashMap::from([
        (META_VERSION.to_owned(), SCHEMA_VERSION.to_owned()),
        (
            META_SETTINGS.to_owned(),
            serde_json::to_string(settings).expect("settings serialise"),
        ),
        (META_LOWEST_PITCH.to_owned(), LOWEST_PITCH.to_string()),
        (META_KEY_COUNT.to_owned(), KEY_COUNT.to_string()),
    ]);
    Schema::new_with_metadata(fields, metadata)
}

/// Convert pieces to one record batch of [`dataset_schema`].
pub fn to_record_batch(schema: &SchemaRef, pieces: &[PieceRecord]) -> RecordBatch {
    let strings = |f: &dyn Fn(&PieceRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(pieces.iter().map(f).collect::<StringArray>())
    };
    let mut roll =
        ListBuilder::new(ListBuilder::new(UInt8Builder::new()).with_field(item(DataType::UInt8)))
            .with_field(item(DataType::List(item(DataType::UInt8))));
    for piece in pieces {
        for frame in piece.roll.frames() {
            let pitches = roll.values().values();
            frame
                .pitches()
                .for_each(|pitch| pitches.append_value(pitch));
            roll.values().append(true);
        }
        roll.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|p| Some(&p.id)),
        strings(&|p| Some(&p.split)),
        strings(&|p| Some(&p.source)),
        strings(&|p| p.title.as_deref()),
        Arc::new(
            pieces
                .iter()
                .map(|p| p.roll.len() as u32)
                .collect::<UInt32Array>(),
        ),
        strings(&|p| p.key.as_deref()),
        strings(&|p| Some(&p.key_source)),
        Arc::new(pieces.iter().map(|p| p.transpose).collect::<Int8Array>()),
        Arc::new(roll.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("columns match the schema")
}

/// Streams record batches of one split into an Arrow IPC file.
pub struct SplitWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: FileWriter<BufWriter<File>>,
}

impl SplitWriter {
    pub fn create(path: &Path, settings: &RollSettings) -> Result<SplitWriter, SchemaError> {
        let schema = Arc::new(dataset_schema(settings));
        let file = File::create(path).map_err(|error| SchemaError::Io {
            path: path.to_owned(),
            error,
        })?;
        let writer = FileWriter::try_new(BufWriter::new(file), &schema).map_err(|error| {
            SchemaError::Arrow {
                path: path.to_owned(),
                error,
            }
        })?;
        Ok(SplitWriter {
            path: path.to_owned(),
            schema,
            writer,
        })
    }

    pub fn write(&mut self, pieces: &[PieceRecord]) -> Result<(), SchemaError> {
        if pieces.is_empty() {
            return Ok(());
        }
        let batch = to_record_batch(&self.schema, pieces);
        self.writer
            .write(&batch)
            .map_err(|error| SchemaError::Arrow {
                path: self.path.clone(),
                error,
            })
    }

    /// Write the footer and flush to disk.
    pub fn finish(mut self) -> Result<(), SchemaError> {
        let arrow_error = |error| SchemaError::Arrow {
            path: self.path.clone(),
            error,
        };
        self.writer.finish().map_err(arrow_error)?;
        let file = self.writer.into_inner().map_err(arrow_error)?;
        let io_error = |error| SchemaError::Io {
            path: self.path.clone(),
            error,
        };
        let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        Ok(())
    }
}

/// Read a split file back, checking that it is a pianoroll dataset. Returns the settings the
/// rolls were made with and the pieces in file order.
pub fn read_split(path: &Path) -> Result<(RollSettings, Vec<PieceRecord>), SchemaError> {
    let schema_error = |reason: String| SchemaError::Schema {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|error| SchemaError::Io {
        path: path.to_owned(),
        error,
    })?;
    let reader =
        FileReader::try_new(BufReader::new(file), None).map_err(|error| SchemaError::Arrow {
            path: path.to_owned(),
            error,
        })?;
    let settings = check_schema(&reader.schema()).map_err(schema_error)?;
    let mut pieces = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|error| SchemaError::Arrow {
            path: path.to_owned(),
            error,
        })?;
        pieces.extend(from_record_batch(&batch).map_err(schema_error)?);
    }
    Ok((settings, pieces))
}

/// The settings recorded in a split file's schema, or why the schema is not ours.
pub fn check_schema(schema: &Schema) -> Result<RollSettings, String> {
    let meta = |key: &str| {
        schema
            .metadata()
            .get(key)
            .ok_or_else(|| format!("schema metadata lacks {key}"))
    };
    let version = meta(META_VERSION)?;
    if version != SCHEMA_VERSION {
        return Err(format!(
            "schema version {version}, this build reads version {SCHEMA_VERSION}"
        ));
    }
    let settings: RollSettings =
        serde_json::from_str(meta(META_SETTINGS)?).map_err(|e| format!("{META_SETTINGS}: {e}"))?;
    if meta(META_LOWEST_PITCH)? != &LOWEST_PITCH.to_string()
        || meta(META_KEY_COUNT)? != &KEY_COUNT.to_string()
    {
        return Err(format!(
            "pitch range is not MIDI {LOWEST_PITCH} + {KEY_COUNT} keys"
        ));
    }
    let expected = dataset_schema(&settings);
    for field in expected.fields() {
        let found = schema
            .field_with_name(field.name())
            .map_err(|_| format!("missing column {}", field.name()))?;
        if found.data_type() != field.data_type() {
            return Err(format!(
                "column {} is {}, expected {}",
                field.name(),
                found.data_type(),
                field.data_type()
            ));
        }
    }
    Ok(settings)
}

fn from_record_batch(batch: &RecordBatch) -> Result<Vec<PieceRecord>, String> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("missing column {name}"))
    };
    let string_column = |name: &str| column(name).map(|c| c.as_string::<i32>().clone());
    let (ids, splits, sources, titles, keys, key_sources) = (
        string_column("id")?,
        string_column("split")?,
        string_column("source")?,
        string_column("title")?,
        string_column("key")?,
        string_column("key_source")?,
    );
    let num_frames = column("num_frames")?.as_primitive::<UInt32Type>().clone();
    let transposes = column("transpose")?.as_primitive::<Int8Type>().clone();
    let rolls = column("roll")?.as_list::<i32>().clone();
    let optional = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());

    (0..batch.num_rows())
        .map(|row| {
            let frames_array = rolls.value(row);
            let frame_lists = frames_array.as_list::<i32>();
            let mut frames = Vec::with_capacity(frame_lists.len());
            for f in 0..frame_lists.len() {
                let pitches = frame_lists.value(f);
                let pitches = pitches.as_primitive::<UInt8Type>();
                let frame = Frame::from_pitches(pitches.values().iter().copied())
                    .ok_or_else(|| format!("row {row}: roll has a pitch outside the piano"))?;
                frames.push(frame);
            }
            if frames.len() != num_frames.value(row) as usize {
                return Err(format!(
                    "row {row}: num_frames {} but the roll has {} frames",
                    num_frames.value(row),
                    frames.len()
                ));
            }
            Ok(PieceRecord {
                id: ids.value(row).to_owned(),
                split: splits.value(row).to_owned(),
                source: sources.value(row).to_owned(),
                title: optional(&titles, row),
                key: optional(&keys, row),
                key_source: key_sources.value(row).to_owned(),
                transpose: transposes.value(row),
                roll: PianoRoll::from_frames(frames),
            })
        })
        .collect()
}
