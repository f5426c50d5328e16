//! What a training run is: [`TrainConfig`] (saved as the run's `config.json`), the learning-rate
//! [`Schedule`], and how a configuration is put together from a [`Recipe`].
//!
//! A recipe is a small TOML file of settings (`recipes/*.toml`): the model family and sizes,
//! the regularisers and the optimiser's schedule. The presets `seed` and `fair` are recipes too
//! (`recipes/{seed,fair}-{lstm,rwkv}.toml`, built into the binary). A run's configuration is, in
//! order of precedence: the command-line flags, then the recipe (a file, or the preset, `fair`
//! by default), then for whatever a recipe file leaves out the `fair` preset of its model.
//! Every value is checked in [`Recipe::resolve`], and an error names the flag and recipe field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::head::{DEFAULT_NADE_HIDDEN, HeadConfig, HeadKind, KeyOrder};
use crate::lstm::LstmConfig;
use crate::model::{ModelConfig, ModelKind};
use crate::rwkv::RwkvConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup, then cosine decay to 10% of the peak.
    Cosine,
    /// The original project's triangular cycle: up to the peak over the first half of training,
    /// back down over the second.
    Triangular,
    /// Linear warmup, then constant.
    Constant,
}

/// Everything that decides what a run computes (not where or how fast: the device and the WKV
/// form are chosen per invocation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub dataset: PathBuf,
    pub roll_settings: pianoroll::RollSettings,
    pub epochs: usize,
    pub max_steps: Option<u64>,
    pub batch_size: usize,
    /// Truncated backpropagation through time: optimise every this many steps, carrying the
    /// (detached) state across windows. `None` = whole pieces.
    pub seq_len: Option<i64>,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub schedule: Schedule,
    pub warmup_steps: u64,
    pub clip_norm: f64,
    pub seed: u64,
    /// Early stopping: end training once this many epochs have passed without a lower valid
    /// NLL (the test then uses the best epoch's weights, as always). `None` = all epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Transposition augmentation: each epoch every training piece is moved by a random number
    /// of semitones in `-k..=k` (drawn from the shuffling generator, so resumes repeat it).
    /// The test pieces are all in C, so this is a regulariser, not a fix for a key mismatch.
    /// 0 = off.
    #[serde(default)]
    pub transpose_augment: u8,
    /// After the transposed epochs (all of `epochs`, or fewer when patience ends them), this
    /// many more on the pieces as they are, at the rate the schedule has reached (its floor
    /// when it ran whole). A model trained only on shifted copies starts its pieces in any of
    /// the shifted keys, while the server writes what it plays as if in C; these epochs bring
    /// it back to C (and score better: `docs/experiments/notebook.md`). 0 = none.
    #[serde(default)]
    pub settle_epochs: usize,
    /// Weight averaging: keep an exponential moving average of the weights, updated after every
    /// optimiser step with this decay, and score valid and test with it (the best checkpoint
    /// holds the averaged weights). `None` = the raw weights.
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Note dropout: in training, each sounding key of each input frame is silenced with this
    /// probability ([`crate::data::drop_notes`]); targets and evaluation are untouched. 0 = off.
    #[serde(default)]
    pub note_dropout: f64,
    /// After the settling epochs, this many more on the pieces as they are in which some input
    /// frames are the model's own samples (`own_samples`): once the model has settled on the
    /// true music, so that its samples are music too. Teacher forcing alone never shows a
    /// model its own music, and a model that drifts on it plays worse than it scores. 0 = none.
    #[serde(default)]
    pub own_sample_epochs: usize,
    /// In the own-sample epochs, each input frame after a piece's first is replaced with this
    /// probability by the frame the model samples for it from the true frames before it (one
    /// pass of parallel scheduled sampling: Duckworth et al. 2019); the targets stay the true
    /// frames.
    #[serde(default)]
    pub own_samples: f64,
    /// Every training piece is preceded by one silent frame, so the model learns to predict a
    /// piece's first frame from that silence, which is where a generation without a primer
    /// starts (without it, the first frame sampled answers an input never seen at the start of
    /// training, and the samples' openings, their mode above all, drift from the data's:
    /// `docs/experiments/notebook.md`). A model that has it is fed the silent frame before a
    /// primer too. Valid and test still score each piece's frames after its first, as
    /// without it, so the NLL stays comparable. Older runs: false.
    #[serde(default)]
    pub silent_start: bool,
    /// The recipe the run was made from, as it was read (flags may have overridden parts of it;
    /// the fields above are what the run used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<RecipeRecord>,
}

/// A recipe's name (its file stem) and text, kept in the run's `config.json` and in the cards
/// of the models exported from it (one type for both: the card's).
pub use proto::card::Recipe as RecipeRecord;

impl TrainConfig {
    /// The epochs after the main ones: settling, then those with own samples.
    pub fn epochs_after_main(&self) -> usize {
        self.settle_epochs + self.own_sample_epochs
    }

    /// Learning rate at optimiser step `step` of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        let total = total.max(1) as f64;
        let s = step as f64;
        match self.schedule {
            Schedule::Triangular => {
                let half = total / 2.0;
                let position = if s < half {
                    s / half
                } else {
                    (total - s) / half
                };
                self.lr * (0.1 + 0.9 * position.clamp(0.0, 1.0))
            }
            Schedule::Cosine | Schedule::Constant if s < self.warmup_steps as f64 => {
                self.lr * (s + 1.0) / self.warmup_steps as f64
            }
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let warm = self.warmup_steps as f64;
                let progress = ((s - warm) / (total - warm).max(1.0)).clamp(0.0, 1.0);
                self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
            }
        }
    }
}

/// The built-in presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The original project's configurations: LSTM 512×2, RWKV 6×512, 10 epochs, triangular
    /// learning-rate cycle.
    Seed,
    /// Equal parameter budgets (about 4.3 M: LSTM 512×2, RWKV 6×232) and the same AdamW,
    /// warmup + cosine schedule for both.
    Fair,
}

impl Preset {
    /// The preset's recipe for one model family (the files in `recipes/`, built in).
    pub fn recipe(self, kind: ModelKind) -> (String, &'static str) {
        let text = match (self, kind) {
            (Preset::Seed, ModelKind::Lstm) => include_str!("../../recipes/seed-lstm.toml"),
            (Preset::Seed, ModelKind::Rwkv) => include_str!("../../recipes/seed-rwkv.toml"),
            (Preset::Fair, ModelKind::Lstm) => include_str!("../../recipes/fair-lstm.toml"),
            (Preset::Fair, ModelKind::Rwkv) => include_str!("../../recipes/fair-rwkv.toml"),
        };
        let preset = match self {
            Preset::Seed => "seed",
            Preset::Fair => "fair",
        };
        (format!("{preset}-{kind}"), text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("recipe {path}: cannot read: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("recipe {path}: {message}")]
    Parse { path: String, message: String },
    #[error("recipe {path}: field `{field}` {problem}")]
    Field {
        path: String,
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Declares [`Recipe`] and [`Recipe::over`] from one list of fields, so that a setting is
/// declared once: its field is its recipe-file key (serde), its flag (clap's `#[arg]`) and, by
/// its doc comment, the documentation of both (`trainer train --help` prints it).
macro_rules! recipe {
    (
        $(#[$attr:meta])*
        pub struct Recipe {
            $( $(#[$field_attr:meta])* pub $field:ident: Option<$type:ty>, )*
        }
    ) => {
        $(#[$attr])*
        pub struct Recipe {
            $( $(#[$field_attr])* pub $field: Option<$type>, )*
        }

        impl Recipe {
            /// `self` with every setting it lacks taken from `under`: the one rule by which
            /// flags override a recipe file, and a recipe file the `fair` preset.
            pub fn over(&self, under: &Recipe) -> Recipe {
                Recipe { $( $field: self.$field.clone().or_else(|| under.$field.clone()), )* }
            }
        }
    };
}

recipe! {
    /// Settings of a run, each optional: a recipe file, the `trainer train` flags that override
    /// it, or both overlaid. A field is a recipe key and a flag of the same name (with `-` for
    /// `_`; `batch_norm = false` is `--no-batch-norm`); `description` is the one key without a
    /// flag. A recipe file may not hold settings of the other model family
    /// ([`Recipe::check_family`]); such flags are ignored, so that one set of flags can go to
    /// runs of both families (`scripts/benchmark-runs.sh`).
    ///
    /// A new setting is a field here and its use in [`Recipe::resolve`]; nothing else lists
    /// the fields.
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
    #[serde(deny_unknown_fields)]
    pub struct Recipe {
        /// What the recipe is for and what it scored (a comment that travels with it; recipe
        /// files only).
        #[arg(skip)]
        pub description: Option<String>,
        /// The model family; a recipe names its own.
        #[arg(long, value_enum)]
        pub model: Option<ModelKind>,
        /// LSTM hidden width.
        #[arg(long)]
        pub hidden: Option<i64>,
        /// LSTM or RWKV layers.
        #[arg(long)]
        pub layers: Option<i64>,
        /// RWKV embedding width.
        #[arg(long)]
        pub embd: Option<i64>,
        /// RWKV channel-mix hidden width as a multiple of the embedding width (4 in RWKV-4).
        #[arg(long)]
        pub ffn_mult: Option<i64>,
        /// LSTM without its two BatchNorms (in a recipe `batch_norm = false`; on when not
        /// given). Their training statistics include future frames, which a model trained on
        /// small batches (e.g. --batch-size 1) learns to exploit.
        // The flag takes no value and means `false`; absent, the field stays `None`, so it
        // overrides a recipe only when given.
        #[arg(
            long = "no-batch-norm",
            num_args = 0,
            default_missing_value = "false",
            hide_possible_values = true
        )]
        pub batch_norm: Option<bool>,
        /// Output head: bernoulli (88 independent keys) or nade (keys decided lowest first,
        /// each given those below it in the frame).
        #[arg(long, value_parser = head_names())]
        pub head: Option<HeadKind>,
        /// NADE hidden units (with the nade head; 128 when not given).
        #[arg(long)]
        pub nade_hidden: Option<i64>,
        /// Which key the NADE head decides first: lowest-first (as RNN-NADE; when not given)
        /// or highest-first (the accompaniment under a fixed melody then sees it: harmonising).
        #[arg(long)]
        pub nade_order: Option<KeyOrder>,
        /// Dropout on the embedded input frame: LSTM after the input BatchNorm, RWKV after ln0.
        #[arg(long)]
        pub dropout_in: Option<f64>,
        /// LSTM dropout after the output BatchNorm.
        #[arg(long)]
        pub dropout_out: Option<f64>,
        /// LSTM dropout between stacked layers (not in the original model).
        #[arg(long)]
        pub dropout_between: Option<f64>,
        /// RWKV dropout on each block's time-mix and channel-mix outputs.
        #[arg(long)]
        pub dropout: Option<f64>,
        /// Passes over the training pieces (fewer when `patience` or `max_steps` ends the run
        /// first).
        #[arg(long)]
        pub epochs: Option<usize>,
        /// Stop after this many optimiser steps (smoke tests, CI).
        #[arg(long)]
        pub max_steps: Option<u64>,
        /// Pieces per batch.
        #[arg(long)]
        pub batch_size: Option<usize>,
        /// Truncated backpropagation through time: window length in frames (whole pieces when
        /// not given).
        #[arg(long)]
        pub seq_len: Option<i64>,
        /// Peak learning rate (AdamW).
        #[arg(long)]
        pub lr: Option<f64>,
        /// AdamW's decoupled weight decay (on weight matrices, not biases or norms).
        #[arg(long)]
        pub weight_decay: Option<f64>,
        /// Learning-rate schedule.
        #[arg(long, value_enum)]
        pub schedule: Option<Schedule>,
        /// Optimiser steps of linear learning-rate warmup (cosine and constant schedules).
        #[arg(long)]
        pub warmup_steps: Option<u64>,
        /// Clip the global gradient norm to this.
        #[arg(long)]
        pub clip_norm: Option<f64>,
        /// Stop early once this many epochs pass without a better valid NLL.
        #[arg(long)]
        pub patience: Option<usize>,
        /// Transposition augmentation: each epoch, move every training piece by a random whole
        /// number of semitones in -K..=K (at most 12). Valid and test are never moved.
        #[arg(long, value_name = "K")]
        pub transpose_augment: Option<u8>,
        /// With --transpose-augment: after the transposed epochs, train this many more on the
        /// pieces as they are (in C), so the model starts its pieces in C again.
        #[arg(long, value_name = "N")]
        pub settle_epochs: Option<usize>,
        /// Weight averaging: score valid and test with an exponential moving average of the
        /// weights, updated every optimiser step with this decay (e.g. 0.995).
        #[arg(long, value_name = "DECAY")]
        pub ema_decay: Option<f64>,
        /// Note dropout (both models): in training, silence each sounding key of each input
        /// frame with this probability; the targets stay whole.
        #[arg(long, value_name = "P")]
        pub note_dropout: Option<f64>,
        /// With --settle-epochs: after the settling epochs, N more on the pieces as they are
        /// with some of the model's own samples as inputs (--own-samples).
        #[arg(long, value_name = "N")]
        pub own_sample_epochs: Option<usize>,
        /// In the own-sample epochs, replace each input frame (after a piece's first) with
        /// probability P by the frame the model samples for it from the true frames before;
        /// the targets stay the true frames.
        #[arg(long, value_name = "P")]
        pub own_samples: Option<f64>,
        /// Train every piece as if one silent frame came before it, so the model also learns
        /// how pieces open: a generation without a primer starts from that silent frame. The
        /// scores count the same frames as without it (not the first).
        #[arg(
            long,
            num_args = 0,
            default_missing_value = "true",
            hide_possible_values = true
        )]
        pub silent_start: Option<bool>,
        /// Seed of the initial weights, the shuffling, the transpositions and the dropout.
        #[arg(long)]
        pub seed: Option<u64>,
    }
}

/// `--head`'s parser: the heads' names, listed in `--help` as clap lists its own enums' (the
/// type is `proto`'s, shared with the model card, so it cannot derive clap's `ValueEnum`).
fn head_names() -> impl clap::builder::TypedValueParser<Value = HeadKind> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    let names = HeadKind::ALL.map(HeadKind::as_str);
    // Clap lets only the listed names through, and each is a head's.
    PossibleValuesParser::new(names).map(|name| name.parse().expect("a head's name"))
}

impl Recipe {
    /// Parse a recipe's TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Recipe, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Read a recipe file; its record (name = file stem, and the text) goes into the run.
    pub fn read(path: &Path) -> Result<(Recipe, RecipeRecord), ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: shown.clone(),
            error,
        })?;
        let recipe = Recipe::parse(&text, &shown)?;
        let name = path
            .file_stem()
            .map_or_else(|| shown.clone(), |s| s.to_string_lossy().into_owned());
        Ok((recipe, RecipeRecord { name, toml: text }))
    }

    /// Refuse settings that would be ignored in a recipe for a `kind` model with output head
    /// `head` (the recipe's own, or the flags'): those of the other model family, and the NADE
    /// width without a NADE head. A recipe that says what it does not do misleads its readers.
    pub fn check_family(
        &self,
        kind: ModelKind,
        head: Option<HeadKind>,
        origin: &str,
    ) -> Result<(), ConfigError> {
        let lstm_only = [
            ("hidden", self.hidden.is_some()),
            ("batch_norm", self.batch_norm.is_some()),
            ("dropout_out", self.dropout_out.is_some()),
            ("dropout_between", self.dropout_between.is_some()),
        ];
        let rwkv_only = [
            ("embd", self.embd.is_some()),
            ("ffn_mult", self.ffn_mult.is_some()),
            ("dropout", self.dropout.is_some()),
        ];
        let (other, fields) = match kind {
            ModelKind::Lstm => (ModelKind::Rwkv, &rwkv_only[..]),
            ModelKind::Rwkv => (ModelKind::Lstm, &lstm_only[..]),
        };
        if let Some(&(field, _)) = fields.iter().find(|(_, set)| *set) {
            return Err(ConfigError::Field {
                path: origin.to_owned(),
                field,
                problem: format!(
                    "is a setting of {other} models, and this run trains an {kind} model"
                ),
            });
        }
        let nade_fields = [
            ("nade_hidden", self.nade_hidden.is_some()),
            ("nade_order", self.nade_order.is_some()),
        ];
        if let Some(&(field, _)) = nade_fields.iter().find(|(_, set)| *set)
            && head != Some(HeadKind::Nade)
        {
            return Err(ConfigError::Field {
                path: origin.to_owned(),
                field,
                problem: "is a setting of the NADE head: add head = \"nade\", or remove it".into(),
            });
        }
        Ok(())
    }

    /// The checked configuration of a run on `dataset` (made on `roll_settings`). Settings
    /// missing here come from the `fair` preset of the recipe's model.
    pub fn resolve(
        &self,
        dataset: &Path,
        roll_settings: pianoroll::RollSettings,
        recipe: Option<RecipeRecord>,
    ) -> Result<TrainConfig, ConfigError> {
        let kind = self.model.ok_or_else(|| {
            ConfigError::Invalid("no model: give --model, or `model` in the recipe".into())
        })?;
        let (name, text) = Preset::Fair.recipe(kind);
        let r = self.over(&Recipe::parse(text, &name)?);
        let need = |value: Option<f64>, flag: &str| {
            value.ok_or_else(|| ConfigError::Invalid(format!("{flag} is not set")))
        };
        let size = |value: Option<i64>, flag: &str| -> Result<i64, ConfigError> {
            let v = value.ok_or_else(|| ConfigError::Invalid(format!("{flag} is not set")))?;
            if v < 1 {
                return Err(invalid(flag, format!("must be at least 1, got {v}")));
            }
            Ok(v)
        };
        let probability = |value: Option<f64>, flag: &str| -> Result<f64, ConfigError> {
            let p = value.unwrap_or(0.0);
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(flag, format!("must be in [0, 1), got {p}")));
            }
            Ok(p)
        };
        let head = match r.head.unwrap_or(HeadKind::Bernoulli) {
            HeadKind::Bernoulli => HeadConfig::Bernoulli,
            HeadKind::Nade => HeadConfig::Nade {
                hidden: size(
                    Some(r.nade_hidden.unwrap_or(DEFAULT_NADE_HIDDEN)),
                    "--nade-hidden",
                )?,
                order: r.nade_order.unwrap_or_default(),
            },
        };
        let model = match kind {
            ModelKind::Lstm => ModelConfig::Lstm(LstmConfig {
                hidden: size(r.hidden, "--hidden")?,
                layers: size(r.layers, "--layers")?,
                dropout_in: probability(r.dropout_in, "--dropout-in")?,
                dropout_out: probability(r.dropout_out, "--dropout-out")?,
                dropout_between: probability(r.dropout_between, "--dropout-between")?,
                batch_norm: r.batch_norm.unwrap_or(true),
                head,
            }),
            ModelKind::Rwkv => ModelConfig::Rwkv(RwkvConfig {
                layers: size(r.layers, "--layers")?,
                embd: size(r.embd, "--embd")?,
                ffn_mult: size(r.ffn_mult, "--ffn-mult")?,
                dropout: probability(r.dropout, "--dropout")?,
                dropout_in: probability(r.dropout_in, "--dropout-in")?,
                head,
            }),
        };
        if let Some(len) = r.seq_len
            && len < 1
        {
            return Err(invalid(
                "--seq-len",
                format!(
                    "must be at least 1 frame, got {len} (leave it out to train on whole pieces)"
                ),
            ));
        }
        if r.max_steps == Some(0) {
            return Err(invalid("--max-steps", "must be at least 1 step".into()));
        }
        let config = TrainConfig {
            model,
            dataset: dataset.to_owned(),
            roll_settings,
            epochs: r.epochs.unwrap_or(0),
            max_steps: r.max_steps,
            batch_size: r.batch_size.unwrap_or(0),
            seq_len: r.seq_len,
            lr: need(r.lr, "--lr")?,
            weight_decay: need(r.weight_decay, "--weight-decay")?,
            beta1: 0.9,
            beta2: 0.999,
            schedule: r.schedule.unwrap_or(Schedule::Cosine),
            warmup_steps: r.warmup_steps.unwrap_or(0),
            clip_norm: need(r.clip_norm, "--clip-norm")?,
            seed: r.seed.unwrap_or(0),
            patience: r.patience,
            transpose_augment: r.transpose_augment.unwrap_or(0),
            settle_epochs: r.settle_epochs.unwrap_or(0),
            ema_decay: r.ema_decay,
            note_dropout: probability(r.note_dropout, "--note-dropout")?,
            own_sample_epochs: r.own_sample_epochs.unwrap_or(0),
            own_samples: probability(r.own_samples, "--own-samples")?,
            silent_start: r.silent_start.unwrap_or(false),
            recipe,
        };
        let positive = [
            ("--epochs", config.epochs as f64),
            ("--batch-size", config.batch_size as f64),
            ("--lr", config.lr),
            ("--clip-norm", config.clip_norm),
        ];
        for (flag, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(flag, format!("must be positive, got {value}")));
            }
        }
        if !(config.weight_decay.is_finite() && config.weight_decay >= 0.0) {
            let wd = config.weight_decay;
            return Err(invalid("--weight-decay", format!("must be >= 0, got {wd}")));
        }
        if config.transpose_augment > 12 {
            let k = config.transpose_augment;
            return Err(invalid(
                "--transpose-augment",
                format!("must be at most 12 semitones (an octave), got {k}"),
            ));
        }
        if config.settle_epochs > 0 && config.transpose_augment == 0 {
            return Err(invalid(
                "--settle-epochs",
                "needs --transpose-augment K above 0: settling epochs follow transposed ones, and this run transposes nothing".into(),
            ));
        }
        if config.own_sample_epochs > 0 && config.settle_epochs == 0 {
            return Err(invalid(
                "--own-sample-epochs",
                "needs --settle-epochs N above 0: the own-sample epochs follow the settling ones, and this run has none".into(),
            ));
        }
        if (config.own_sample_epochs > 0) != (config.own_samples > 0.0) {
            return Err(invalid(
                "--own-samples",
                format!(
                    "--own-sample-epochs and --own-samples go together: got {} epochs and a share of {}",
                    config.own_sample_epochs, config.own_samples
                ),
            ));
        }
        if config.patience == Some(0) {
            return Err(invalid("--patience", "must be at least 1 epoch".into()));
        }
        if let Some(decay) = config.ema_decay {
            probability(Some(decay), "--ema-decay")?;
        }
        Ok(config)
    }
}

/// The configuration of a new run on `dataset`: the `flags` over the recipe in `recipe_file`,
/// or over the built-in `preset` (`fair` when neither is given) of the flags' model.
pub fn from_recipe_and_flags(
    recipe_file: Option<&Path>,
    preset: Option<Preset>,
    flags: &Recipe,
    dataset: &Path,
    roll_settings: pianoroll::RollSettings,
) -> Result<TrainConfig, ConfigError> {
    let (recipe, record, origin) = match recipe_file {
        Some(path) => {
            let (recipe, record) = Recipe::read(path)?;
            // Without a model anywhere, resolving says so.
            if let Some(kind) = recipe.model.or(flags.model) {
                let head = flags.head.or(recipe.head);
                recipe.check_family(kind, head, &path.display().to_string())?;
            }
            (recipe, record, format!("recipe {}", path.display()))
        }
        None => {
            let kind = flags.model.ok_or_else(|| {
                ConfigError::Invalid("--model is required without --recipe".into())
            })?;
            let (name, text) = preset.unwrap_or(Preset::Fair).recipe(kind);
            let recipe = Recipe::parse(text, &name)?;
            let origin = format!("preset {name}");
            let record = RecipeRecord {
                name,
                toml: text.to_owned(),
            };
            (recipe, record, origin)
        }
    };
    from_parsed_recipe_and_flags(recipe, record, &origin, flags, dataset, roll_settings)
}

/// [`from_recipe_and_flags`] for a recipe already made (`--recipe auto`): `origin` says where it
/// came from in errors.
pub fn from_parsed_recipe_and_flags(
    recipe: Recipe,
    record: RecipeRecord,
    origin: &str,
    flags: &Recipe,
    dataset: &Path,
    roll_settings: pianoroll::RollSettings,
) -> Result<TrainConfig, ConfigError> {
    if let (Some(flag), Some(own)) = (flags.model, recipe.model)
        && flag != own
    {
        return Err(ConfigError::Invalid(format!(
            "--model {flag} contradicts {origin}, which is for {own}"
        )));
    }
    flags
        .over(&recipe)
        .resolve(dataset, roll_settings, Some(record))
        .map_err(|error| match error {
            ConfigError::Invalid(problem) => {
                ConfigError::Invalid(format!("{problem} ({origin} and the flags given)"))
            }
            other => other,
        })
}

/// An error about one setting, named as a flag and as a recipe field.
fn invalid(flag: &str, problem: String) -> ConfigError {
    let field = flag.trim_start_matches('-').replace('-', "_");
    ConfigError::Invalid(format!("{flag} (recipe field `{field}`) {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_resolves_to_its_documented_sizes() {
        let settings = pianoroll::RollSettings::benchmark();
        for preset in [Preset::Seed, Preset::Fair] {
            for kind in [ModelKind::Lstm, ModelKind::Rwkv] {
                let (name, text) = preset.recipe(kind);
                let recipe = Recipe::parse(text, &name).unwrap();
                assert_eq!(recipe.model, Some(kind), "{name}");
                let config = recipe.resolve(Path::new("d"), settings, None).unwrap();
                let expected = match (preset, kind) {
                    (_, ModelKind::Lstm) => ModelConfig::Lstm(LstmConfig::original()),
                    (Preset::Seed, ModelKind::Rwkv) => ModelConfig::Rwkv(RwkvConfig::original()),
                    (Preset::Fair, ModelKind::Rwkv) => ModelConfig::Rwkv(RwkvConfig {
                        embd: 232,
                        ..RwkvConfig::original()
                    }),
                };
                assert_eq!(config.model, expected, "{name}");
            }
        }
    }

    #[test]
    fn every_recipe_file_resolves() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        let mut seen = 0;
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let (recipe, record) = Recipe::read(&path).unwrap();
                let kind = recipe.model.unwrap();
                let checked = recipe.check_family(kind, recipe.head, "r");
                assert!(checked.is_ok(), "{}: {checked:?}", path.display());
                let settings = pianoroll::RollSettings::benchmark();
                let config = recipe.resolve(Path::new("d"), settings, Some(record));
                assert!(config.is_ok(), "{}: {config:?}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 6, "only {seen} recipes in {}", folder.display());
    }

    #[test]
    fn an_unknown_field_and_a_bad_value_are_named() {
        let error = Recipe::parse("model = \"lstm\"\nhiden = 3\n", "r.toml").unwrap_err();
        assert!(error.to_string().contains("hiden"), "{error}");
        let recipe = Recipe::parse("model = \"rwkv\"\nembd = 0\n", "r.toml").unwrap();
        let error = recipe
            .resolve(Path::new("d"), pianoroll::RollSettings::benchmark(), None)
            .unwrap_err();
        assert!(error.to_string().contains("--embd"), "{error}");
        assert!(error.to_string().contains("`embd`"), "{error}");
    }

    /// `seq_len = -5` used to train on whole pieces (the loop ignores windows under 1 frame)
    /// and `embd` in an LSTM recipe was dropped without a word.
    #[test]
    fn non_positive_lengths_and_settings_of_the_other_family_are_refused_by_field() {
        let settings = pianoroll::RollSettings::benchmark();
        for (text, field) in [
            ("model = \"lstm\"\nseq_len = -5\n", "`seq_len`"),
            ("model = \"rwkv\"\nseq_len = 0\n", "`seq_len`"),
            ("model = \"lstm\"\nmax_steps = 0\n", "`max_steps`"),
        ] {
            let error = Recipe::parse(text, "r.toml")
                .unwrap()
                .resolve(Path::new("d"), settings, None)
                .unwrap_err();
            assert!(error.to_string().contains(field), "{text}: {error}");
        }
        let error = Recipe::parse("model = \"lstm\"\nwarmup_steps = -5\n", "r.toml").unwrap_err();
        assert!(error.to_string().contains("warmup_steps"), "{error}");
        assert!(error.to_string().contains("r.toml"), "{error}");

        for (text, kind, head, field) in [
            ("embd = 8\n", ModelKind::Lstm, None, "`embd`"),
            ("dropout = 0.1\n", ModelKind::Lstm, None, "`dropout`"),
            ("ffn_mult = 2\n", ModelKind::Lstm, None, "`ffn_mult`"),
            ("hidden = 8\n", ModelKind::Rwkv, None, "`hidden`"),
            (
                "batch_norm = false\n",
                ModelKind::Rwkv,
                None,
                "`batch_norm`",
            ),
            (
                "dropout_out = 0.1\n",
                ModelKind::Rwkv,
                None,
                "`dropout_out`",
            ),
            (
                "dropout_between = 0.1\n",
                ModelKind::Rwkv,
                None,
                "`dropout_between`",
            ),
            ("nade_hidden = 8\n", ModelKind::Lstm, None, "`nade_hidden`"),
            (
                "nade_hidden = 8\n",
                ModelKind::Rwkv,
                Some(HeadKind::Bernoulli),
                "`nade_hidden`",
            ),
            (
                "nade_order = \"highest-first\"\n",
                ModelKind::Lstm,
                None,
                "`nade_order`",
            ),
        ] {
            let recipe = Recipe::parse(text, "r.toml").unwrap();
            let error = recipe.check_family(kind, head, "r.toml").unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(field) && message.contains("r.toml"),
                "{message}"
            );
        }
        let shared = "layers = 1\ndropout_in = 0.1\nnade_hidden = 8\n";
        for kind in [ModelKind::Lstm, ModelKind::Rwkv] {
            let recipe = Recipe::parse(shared, "r.toml").unwrap();
            assert!(
                recipe
                    .check_family(kind, Some(HeadKind::Nade), "r.toml")
                    .is_ok()
            );
        }
    }

    #[test]
    fn the_head_is_bernoulli_unless_a_recipe_or_flag_asks_for_nade() {
        let settings = pianoroll::RollSettings::benchmark();
        let resolve = |text: &str| {
            Recipe::parse(text, "r")
                .unwrap()
                .resolve(Path::new("d"), settings, None)
                .map(|c| c.model.head())
        };
        assert_eq!(
            resolve("model = \"lstm\"\n").unwrap(),
            HeadConfig::Bernoulli
        );
        assert_eq!(
            resolve("model = \"rwkv\"\nhead = \"nade\"\n").unwrap(),
            HeadConfig::Nade {
                hidden: DEFAULT_NADE_HIDDEN,
                order: KeyOrder::LowestFirst,
            }
        );
        assert_eq!(
            resolve("model = \"lstm\"\nhead = \"nade\"\nnade_hidden = 32\n").unwrap(),
            HeadConfig::Nade {
                hidden: 32,
                order: KeyOrder::LowestFirst,
            }
        );
        assert_eq!(
            resolve("model = \"lstm\"\nhead = \"nade\"\nnade_order = \"highest-first\"\n").unwrap(),
            HeadConfig::Nade {
                hidden: DEFAULT_NADE_HIDDEN,
                order: KeyOrder::HighestFirst,
            }
        );
        // A run folder written before the choice existed reads as lowest first.
        let old: HeadConfig = serde_json::from_str(r#"{"kind":"nade","hidden":64}"#).unwrap();
        assert_eq!(
            old,
            HeadConfig::Nade {
                hidden: 64,
                order: KeyOrder::LowestFirst,
            }
        );
        let error = resolve("model = \"lstm\"\nhead = \"nade\"\nnade_hidden = 0\n").unwrap_err();
        assert!(error.to_string().contains("--nade-hidden"), "{error}");
    }

    /// The recipe fields that are set (not `None`), by their recipe-file names.
    fn fields_set(recipe: &Recipe) -> Vec<(String, serde_json::Value)> {
        let serde_json::Value::Object(fields) = serde_json::to_value(recipe).unwrap() else {
            panic!("a recipe serialises as a map")
        };
        fields.into_iter().filter(|(_, v)| !v.is_null()).collect()
    }

    /// Each recipe field is a flag of its own name (`batch_norm`: `--no-batch-norm`), and the
    /// flag and the recipe-file key set the field to the same value; `description` alone has
    /// no flag. A field added without its flag, or a flag renamed, fails here.
    #[test]
    fn every_recipe_field_is_settable_from_a_file_and_from_its_flag() {
        use clap::{Args, FromArgMatches};
        let all = Recipe {
            description: Some(String::new()),
            ..Recipe::default()
        };
        let mut fields: Vec<String> = serde_json::to_value(&all)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .filter(|field| *field != "description")
            .cloned()
            .collect();
        let command = Recipe::augment_args(clap::Command::new("train"));
        let mut flagged = Vec::new();
        for arg in command.get_arguments() {
            let long = arg.get_long().expect("every setting is a long flag");
            let takes_no_value = arg.get_num_args() == Some(0.into());
            // A value each parser takes: the last listed for a choice, else a small number.
            let value = match arg.get_possible_values().last() {
                Some(choice) => choice.get_name().to_owned(),
                None => "3".to_owned(),
            };
            let flag = match takes_no_value {
                true => format!("--{long}"),
                false => format!("--{long}={value}"),
            };
            let matches = command
                .clone()
                .try_get_matches_from(["train", flag.as_str()])
                .unwrap_or_else(|e| panic!("{flag}: {e}"));
            let from_flag = Recipe::from_arg_matches(&matches).unwrap();
            let set = fields_set(&from_flag);
            let [(field, value)] = set.as_slice() else {
                panic!("{flag} sets {set:?}, not one field")
            };
            let expected = match field.as_str() {
                "batch_norm" => "no-batch-norm".to_owned(),
                _ => field.replace('_', "-"),
            };
            assert_eq!(long, expected, "the flag of recipe field `{field}`");
            // The JSON scalars here (numbers, strings, booleans) are TOML values too.
            let text = format!("{field} = {value}\n");
            let from_file = Recipe::parse(&text, "r.toml").unwrap();
            assert_eq!(from_file, from_flag, "{flag} and the recipe line {text:?}");
            flagged.push(field.clone());
        }
        fields.sort();
        flagged.sort();
        assert_eq!(flagged, fields, "recipe fields and flags differ");
        assert!(
            fields.len() >= 26,
            "only {} fields: {fields:?}",
            fields.len()
        );
    }

    /// A flag that is not given leaves the recipe's value, `--no-batch-norm` included (its
    /// absence is not `batch_norm = true`).
    #[test]
    fn flags_not_given_leave_the_recipe_alone() {
        use clap::{Args, FromArgMatches};
        let command = Recipe::augment_args(clap::Command::new("train"));
        let flags = |args: &[&str]| {
            let matches = command
                .clone()
                .try_get_matches_from(std::iter::once("train").chain(args.iter().copied()))
                .unwrap();
            Recipe::from_arg_matches(&matches).unwrap()
        };
        assert_eq!(flags(&[]), Recipe::default());
        let file =
            Recipe::parse("model = \"lstm\"\nbatch_norm = false\nlr = 0.002\n", "r").unwrap();
        assert_eq!(flags(&[]).over(&file), file);
        let over = flags(&["--lr", "0.003", "--no-batch-norm"]).over(&Recipe::default());
        assert_eq!((over.lr, over.batch_norm), (Some(0.003), Some(false)));
    }

    #[test]
    fn flags_override_the_recipe_and_the_recipe_overrides_the_fair_preset() {
        let file = Recipe::parse("model = \"rwkv\"\nembd = 64\nlr = 0.002\n", "r").unwrap();
        let flags = Recipe {
            lr: Some(0.003),
            ..Recipe::default()
        };
        let config = flags
            .over(&file)
            .resolve(Path::new("d"), pianoroll::RollSettings::benchmark(), None)
            .unwrap();
        assert_eq!(config.lr, 0.003);
        let ModelConfig::Rwkv(rwkv) = config.model else {
            panic!("an RWKV recipe")
        };
        assert_eq!(rwkv.embd, 64);
        assert_eq!(rwkv.layers, 6, "from the fair preset");
        assert_eq!(config.schedule, Schedule::Cosine, "from the fair preset");
    }
}
