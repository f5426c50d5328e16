//! Each committed recipe with a record (`docs/experiments/recipes/current.txt`) still resolves to
//! the settings its record was trained with: a recipe changed without a new record fails here,
//! on the CPU, before the GPU job (`scripts/gpu-ci.sh`) trains it and compares its score with a
//! record of other settings.

use std::path::{Path, PathBuf};

use trainer::config::{Recipe, TrainConfig, from_recipe_and_flags};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the trainer crate sits in the workspace")
        .to_owned()
}

/// The (recipe, record) pairs of `current.txt`.
fn recipes_and_records() -> Vec<(String, String)> {
    let list = repo_root().join("docs/experiments/recipes/current.txt");
    std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [recipe, record] => (recipe.to_owned(), record.to_owned()),
                _ => panic!("{}: not `recipe record`: {line:?}", list.display()),
            },
        )
        .collect()
}

#[test]
fn every_recipe_resolves_to_its_records_settings() {
    let pairs = recipes_and_records();
    let recipes: Vec<&str> = pairs.iter().map(|(recipe, _)| recipe.as_str()).collect();
    // The shipped models' recipes and those of the GPU job's CPU dry run, at least.
    for recipe in ["lstm-nade-aug", "rwkv-nade-aug", "demo-lstm", "demo-rwkv"] {
        assert!(recipes.contains(&recipe), "{recipe} has no record");
    }
    for (recipe, record) in pairs {
        let folder = repo_root().join("docs/experiments/recipes").join(&record);
        // Read as a run folder is read on resume: a setting newer than the record takes the
        // value that reproduces what the record was trained with.
        let recorded: TrainConfig =
            serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        let file = repo_root().join("recipes").join(format!("{recipe}.toml"));
        let mut resolved = from_recipe_and_flags(
            Some(&file),
            None,
            &Recipe::default(),
            &recorded.dataset,
            recorded.roll_settings,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // The recipe file's text may have been reworded since (and the record may come from
        // another file and flags); the settings it resolves to are what must agree.
        resolved.recipe = recorded.recipe.clone();
        let (now, then) = (
            serde_json::to_value(&resolved).unwrap(),
            serde_json::to_value(&recorded).unwrap(),
        );
        let differ: Vec<String> = now
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, value)| then[key.as_str()] != **value)
            .map(|(key, value)| format!("{key} = {value} (recorded {})", then[key.as_str()]))
            .collect();
        assert!(
            differ.is_empty(),
            "recipes/{recipe}.toml no longer trains what its record {} was trained with: {}",
            folder.display(),
            differ.join("; ")
        );
        assert_eq!(resolved, recorded);
    }
}
