//! Configs fuzzed: every shipped config edited at random (a value replaced by one of the
//! wrong type, out of range or absurd, a line deleted, repeated or swapped, a key added, the
//! text cut short) and put through what `dlcli config check` does: parse, load the data, build
//! the model at its batch size and weigh a training step. Every outcome must be a config error
//! or a model, never a panic. `DLCLI_FUZZ_CASES` cases (default 200) per config;
//! `scripts/fuzz.sh MINUTES` runs it for longer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config as Runner, TestRunner};

use crate::config::Config;
use crate::task::{self, Task};
use crate::{context, memory, model};

/// Values that are wrong somewhere: types, ranges, sizes.
const VALUES: &[&str] = &[
    "-1",
    "0",
    "1",
    "2",
    "3",
    "7",
    "64",
    "100000",
    "4294967297",
    "18446744073709551616",
    "1e9",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "1e-45",
    "0.5",
    "-0.5",
    "\"\"",
    "\"relu\"",
    "\"x\"",
    "[]",
    "[\"a\"]",
    "[\"conv1\"]",
    "{}",
    "true",
    "[1, 2]",
    "\"../nowhere.csv\"",
];

/// Keys that some table has, or none.
const KEYS: &[&str] = &[
    "epochs",
    "batch_size",
    "lr",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "out_channels",
    "out_features",
    "hidden",
    "heads",
    "dim",
    "layers",
    "context",
    "window",
    "p",
    "inputs",
    "type",
    "name",
    "tie",
    "return",
    "bogus",
];

#[derive(Debug, Clone)]
enum Edit {
    /// The value after the n-th `=` (at this share of them) replaced by `VALUES[i]`.
    Value(f64, usize),
    /// The line at this share deleted, repeated, or swapped with the one at the second share.
    Delete(f64),
    Repeat(f64),
    Swap(f64, f64),
    /// `KEYS[k] = VALUES[v]` added inside the inline table or after the line at this share.
    Add(f64, usize, usize),
    /// The text cut at this share.
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let share = || 0.0..1.0f64;
    prop_oneof![
        4 => (share(), 0..VALUES.len()).prop_map(|(s, v)| Edit::Value(s, v)),
        1 => share().prop_map(Edit::Delete),
        1 => share().prop_map(Edit::Repeat),
        1 => (share(), share()).prop_map(|(a, b)| Edit::Swap(a, b)),
        2 => (share(), 0..KEYS.len(), 0..VALUES.len()).prop_map(|(s, k, v)| Edit::Add(s, k, v)),
        1 => share().prop_map(Edit::Truncate),
    ]
}

fn pick(share: f64, len: usize) -> usize {
    ((share * len as f64) as usize).min(len.saturating_sub(1))
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for edit in edits {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            break;
        }
        match *edit {
            Edit::Value(share, v) => {
                let equals: Vec<usize> = text.match_indices("= ").map(|(i, _)| i + 2).collect();
                if let Some(&start) = equals.get(pick(share, equals.len())) {
                    let rest = &text[start..];
                    let end = start + rest.find([',', '}', '\n']).unwrap_or(rest.len());
                    text.replace_range(start..end, VALUES[v]);
                }
                continue;
            }
            Edit::Delete(share) => {
                lines.remove(pick(share, lines.len()));
            }
            Edit::Repeat(share) => {
                let i = pick(share, lines.len());
                lines.insert(i, lines[i].clone());
            }
            Edit::Swap(a, b) => {
                let (i, j) = (pick(a, lines.len()), pick(b, lines.len()));
                lines.swap(i, j);
            }
            Edit::Add(share, k, v) => {
                let i = pick(share, lines.len());
                let pair = format!("{} = {}", KEYS[k], VALUES[v]);
                match lines[i].rfind('}') {
                    Some(at) => lines[i].insert_str(at, &format!(", {pair} ")),
                    None => lines.insert(i + 1, pair),
                }
            }
            Edit::Truncate(share) => {
                let mut cut = (share * text.len() as f64) as usize;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                continue;
            }
        }
        text = lines.join("\n") + "\n";
    }
    text
}

/// What `dlcli config check` does with `text` (a config at `path`), the data (its task) read
/// once per distinct [data] table.
fn check(path: &Path, text: &str, loaded: &mut HashMap<String, Option<Box<dyn Task>>>) -> anyhow::Result<()> {
    let mut config = Config::parse(path, text)?;
    config.resolve_data_paths(path.parent().unwrap_or(Path::new("")));
    let key = format!("{:?}", config.data);
    let read = || task::load_test(&config.data, config.train.seed, None).ok().map(|(_, task)| task);
    // The data refused: a typed error.
    let Some(task) = loaded.entry(key).or_insert_with(read) else { return Ok(()) };
    let batch = config.train.batch_size;
    let built = model::build(&config, task.as_ref(), batch)?;
    memory::Estimate::of(&built, &context::training(&config.train, 1), false)?.check(None, batch)?;
    Ok(())
}

#[test]
fn edited_shipped_configs_are_errors_or_models_never_panics() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&configs)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let cases = std::env::var("DLCLI_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    // The runner takes a Fn: the data cache and the counts live in cells.
    let loaded = std::cell::RefCell::new(HashMap::new());
    for path in &paths {
        let original = std::fs::read_to_string(path).unwrap();
        let mut runner = TestRunner::new(Runner { cases, failure_persistence: None, ..Runner::default() });
        let (models, errors) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        runner
            .run(&prop::collection::vec(edit(), 1..4), |edits| {
                let counted = match check(path, &apply(&original, &edits), &mut loaded.borrow_mut()) {
                    Ok(()) => &models,
                    Err(_) => &errors,
                };
                counted.set(counted.get() + 1);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (models, errors) = (models.get(), errors.get());
        println!("fuzz {}: {cases} edited configs: {models} built, {errors} refused, no panic", path.display());
    }
}
