//! `--recipe auto`: a recipe chosen from the corpus, for a person who brings a few hundred pieces
//! of their own and no time to tune. It starts from the family's best measured recipe
//! (`recipes/{lstm,rwkv}-nade-aug.toml`, made on Nottingham's 694 training pieces: every piece
//! moved by a random whole number of semitones within ±2 each epoch, then settling epochs on
//! the pieces as they are) and changes only what the corpus's size calls for, by rules measured
//! on Nottingham, a third of it and Bach's chorales (`docs/experiments/notebook.md`, "A recipe
//! for a new corpus" and after):
//!
//! - **full size** (at least 60% of Nottingham's training frames): the recipe as it is;
//! - **small** (below that): transpositions within ±5 (nearly every key: fewer pieces need more
//!   variations of them) and a longer run, since one epoch is fewer steps. For the LSTM:
//!   epochs enough to see about 7 million training frames (40 to 200), patience 15. On a third
//!   of Nottingham that is 120 epochs and scored test 1.944 (±2: 2.087; more dropout on top
//!   of ±5: 1.959), against 2.796 for `lstm-nade.toml` unchanged. For RWKV: 60 epochs,
//!   patience 15 (on the third, with ±5: test 1.992, against 1.833 on all of Nottingham with
//!   the recipe of that time and 1.655 with today's; on Bach's chorales, tiny, with ±2:
//!   6.002, against 6.235 over 24 epochs and 6.831 for `rwkv-nade.toml` unchanged), without
//!   the base recipe's own-sample epochs and with its NADE at 128 units (the base has 512),
//!   as the rule was measured;
//! - **tiny** (below 10%): the same at half the width (on Bach's chorales as good as full
//!   width at a quarter of the parameters; with ±2 test 5.589 after 12 settling epochs,
//!   against 6.884 for `lstm-nade.toml` unchanged).
//!
//! Every run keeps early stopping on validation, and the run's `config.json` records the recipe
//! chosen (as TOML text, with the corpus and the rule in its first lines), so it can be read and
//! rerun as a file.

use crate::config::{ConfigError, Recipe, RecipeRecord};
use crate::model::ModelKind;

/// Nottingham's training frames on the benchmark grid, the corpus the base recipes were made on.
pub const NOTTINGHAM_TRAIN_FRAMES: u64 = 177_255;

/// Training frames an LSTM-NADE run on a small corpus sees in all (epochs × training frames):
/// 120 epochs of a third of Nottingham, the run that scored test 2.094 there. About 40 minutes
/// on this 2-core CPU.
const SMALL_CORPUS_FRAMES_SEEN: u64 = 7_000_000;

/// The epochs of a small corpus's LSTM-NADE run: [`SMALL_CORPUS_FRAMES_SEEN`] over its
/// training frames, at least 40 and at most 200 (a tiny corpus stops early on validation long
/// before 200: patience 15).
fn small_corpus_epochs(corpus: &Corpus) -> usize {
    (SMALL_CORPUS_FRAMES_SEEN / corpus.frames.max(1)).clamp(40, 200) as usize
}

/// A small corpus's transpositions: within ±5 semitones, 11 of the 12 keys (±2 on a third of
/// Nottingham: test 2.087; ±5: 1.944).
const SMALL_CORPUS_TRANSPOSITIONS: u8 = 5;

/// What the rules look at: the training split's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corpus {
    pub pieces: u64,
    pub frames: u64,
}

/// The corpus's size class, by its training frames against Nottingham's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Full,
    Small,
    Tiny,
}

impl Size {
    pub fn of(corpus: &Corpus) -> Size {
        let share = corpus.frames as f64 / NOTTINGHAM_TRAIN_FRAMES as f64;
        if share >= 0.6 {
            Size::Full
        } else if share >= 0.1 {
            Size::Small
        } else {
            Size::Tiny
        }
    }

    fn name(self) -> &'static str {
        match self {
            Size::Full => "full size",
            Size::Small => "small",
            Size::Tiny => "tiny",
        }
    }

    /// The settings this size changes in a `kind` recipe for `corpus` (the others stay the
    /// base's).
    fn changes(self, kind: ModelKind, corpus: &Corpus) -> Recipe {
        let changes = match (self, kind) {
            (Size::Full, _) => Recipe::default(),
            (Size::Small | Size::Tiny, ModelKind::Lstm) => Recipe {
                epochs: Some(small_corpus_epochs(corpus)),
                patience: Some(15),
                transpose_augment: Some(SMALL_CORPUS_TRANSPOSITIONS),
                ..Recipe::default()
            },
            (Size::Small | Size::Tiny, ModelKind::Rwkv) => Recipe {
                epochs: Some(60),
                patience: Some(15),
                transpose_augment: Some(SMALL_CORPUS_TRANSPOSITIONS),
                // The rule was measured before the base recipe's own-sample epochs and its
                // 512-unit NADE, which are measured on all of Nottingham only.
                own_sample_epochs: Some(0),
                own_samples: Some(0.0),
                nade_hidden: Some(128),
                ..Recipe::default()
            },
        };
        match (self, kind) {
            (Size::Tiny, ModelKind::Lstm) => Recipe {
                hidden: Some(128),
                nade_hidden: Some(64),
                ..changes
            },
            (Size::Tiny, ModelKind::Rwkv) => Recipe {
                embd: Some(64),
                nade_hidden: Some(64),
                ..changes
            },
            _ => changes,
        }
    }
}

/// The base recipe of a family: its name and text.
fn base(kind: ModelKind) -> (&'static str, &'static str) {
    match kind {
        ModelKind::Lstm => (
            "lstm-nade-aug",
            include_str!("../../recipes/lstm-nade-aug.toml"),
        ),
        ModelKind::Rwkv => (
            "rwkv-nade-aug",
            include_str!("../../recipes/rwkv-nade-aug.toml"),
        ),
    }
}

/// The recipe `--recipe auto` chooses for a `kind` model on `corpus`, and its record: named
/// `auto`, its text the chosen settings with the corpus and the rule in the first lines.
pub fn recipe(kind: ModelKind, corpus: &Corpus) -> Result<(Recipe, RecipeRecord), ConfigError> {
    let (base_name, base_text) = base(kind);
    let size = Size::of(corpus);
    let recipe = size
        .changes(kind, corpus)
        .over(&Recipe::parse(base_text, base_name)?);
    let settings = toml::to_string(&Recipe {
        description: None,
        ..recipe.clone()
    })
    .map_err(|e| ConfigError::Invalid(format!("--recipe auto: {e}")))?;
    let text = format!(
        "# --recipe auto for a corpus of {} training pieces, {} frames ({:.0}% of Nottingham's): \
         {}, so recipes/{base_name}.toml{}.\n{settings}",
        corpus.pieces,
        corpus.frames,
        100.0 * corpus.frames as f64 / NOTTINGHAM_TRAIN_FRAMES as f64,
        size.name(),
        match size {
            Size::Full => " as it is",
            Size::Small => " with transpositions within ±5 and longer training",
            Size::Tiny => " at half width, with transpositions within ±5 and longer training",
        },
    );
    let recipe = Recipe {
        description: Some(format!("auto: {} corpus, from {base_name}", size.name())),
        ..recipe
    };
    Ok((
        recipe,
        RecipeRecord {
            name: "auto".to_owned(),
            toml: text,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(frames: u64) -> Corpus {
        Corpus {
            pieces: frames / 250,
            frames,
        }
    }

    #[test]
    fn a_small_corpus_trains_for_a_fixed_number_of_frames_within_bounds() {
        assert_eq!(small_corpus_epochs(&corpus(58_251)), 120); // a third of Nottingham
        assert_eq!(small_corpus_epochs(&corpus(100_000)), 70);
        assert_eq!(small_corpus_epochs(&corpus(13_705)), 200); // Bach's chorales: capped
        assert_eq!(small_corpus_epochs(&corpus(0)), 200);
        assert_eq!(small_corpus_epochs(&corpus(175_000)), 40);
    }

    #[test]
    fn sizes_follow_the_share_of_nottinghams_frames() {
        assert_eq!(Size::of(&corpus(NOTTINGHAM_TRAIN_FRAMES)), Size::Full);
        assert_eq!(Size::of(&corpus(110_000)), Size::Full);
        assert_eq!(Size::of(&corpus(59_000)), Size::Small); // a third of Nottingham
        assert_eq!(Size::of(&corpus(17_000)), Size::Tiny);
        assert_eq!(Size::of(&corpus(0)), Size::Tiny);
    }

    /// The full-size recipe is the base recipe's settings; smaller corpora change only what
    /// their rule says; every chosen recipe reads back from its own record's text.
    #[test]
    fn each_size_changes_only_its_settings_and_the_record_reads_back() {
        for kind in [ModelKind::Lstm, ModelKind::Rwkv] {
            let (base_name, base_text) = base(kind);
            let base = Recipe::parse(base_text, base_name).unwrap();
            for (frames, size) in [
                (NOTTINGHAM_TRAIN_FRAMES, Size::Full),
                (59_000, Size::Small),
                (9_000, Size::Tiny),
            ] {
                let (chosen, record) = recipe(kind, &corpus(frames)).unwrap();
                assert_eq!(record.name, "auto");
                assert!(
                    record.toml.contains(size.name()) && record.toml.contains(base_name),
                    "{}",
                    record.toml
                );
                let reread = Recipe::parse(&record.toml, "auto").unwrap();
                assert_eq!(
                    Recipe {
                        description: None,
                        ..chosen.clone()
                    },
                    reread,
                    "{kind:?} {size:?}"
                );
                let unchanged = |r: &Recipe| Recipe {
                    description: None,
                    ..size.changes(kind, &corpus(frames)).over(r)
                };
                assert_eq!(unchanged(&chosen), unchanged(&base), "{kind:?} {size:?}");
                assert_eq!(chosen.nade_order, base.nade_order);
                match size {
                    Size::Full => assert_eq!(
                        Recipe {
                            description: None,
                            ..chosen
                        },
                        Recipe {
                            description: None,
                            ..base.clone()
                        }
                    ),
                    Size::Small | Size::Tiny => {
                        assert!(chosen.epochs.unwrap() > base.epochs.unwrap());
                    }
                }
                // Every size transposes (a smaller corpus further), and settles back into C
                // afterwards.
                let semitones = match size {
                    Size::Full => 2,
                    Size::Small | Size::Tiny => 5,
                };
                assert_eq!(chosen.transpose_augment, Some(semitones));
                assert!(chosen.settle_epochs.unwrap() > 0);
                // The RWKV base recipe's 512-unit NADE was measured on all of Nottingham only:
                // the smaller corpora's rules keep the widths they were measured with.
                if size != Size::Full {
                    assert!(chosen.nade_hidden.unwrap() <= 128, "{kind:?} {size:?}");
                }
            }
        }
    }
}
