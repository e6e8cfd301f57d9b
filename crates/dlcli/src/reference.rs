//! The key reference, written from the declarations in `config.rs`: `dlcli config defaults`
//! (a commented config with every key and its default, itself a valid config) and
//! `dlcli config defaults --markdown` (the README's key tables).

use std::fmt::Write;

use graph::settings::{Key, Section, Tagged, Variant};

use crate::config::{DataConfig, DataSource, EvalConfig, LayerKind, LayerTable, TrainConfig};
use crate::schema::to_toml;

/// The model the defaults file trains: an example, not a list of keys.
const EXAMPLE_LAYERS: &str = r#"layers = [
    { type = "conv2d", name = "conv1", out_channels = 16, kernel = 3, padding = 1 },
    { type = "relu" },
    { type = "max_pool2d", kernel = 2 },
    { type = "flatten" },
    { type = "linear", name = "fc", out_features = 10 },
]
"#;

/// The data kind the defaults file uses (every key of it has a default).
const EXAMPLE_KIND: &str = "digits";

/// How a key's value reads in the reference: its default, or what to write.
fn value(key: &Key) -> String {
    match (&key.default, key.optional) {
        (Some(v), _) => to_toml(v).to_string().trim().to_string(),
        (None, true) => format!("<{}, optional>", key.kind),
        (None, false) => format!("<{}>", key.kind),
    }
}

/// One-line description: the type, the range and the docs.
fn description(key: &Key) -> String {
    let doc = if key.doc.is_empty() { String::new() } else { format!(": {}", key.doc) };
    format!("{}{doc}", key.kind_and_bound())
}

/// `key = value   # description` lines, the comments aligned.
fn assignments(keys: &[Key], out: &mut String) {
    let lines: Vec<(String, String)> =
        keys.iter().map(|k| (format!("{} = {}", k.name, value(k)), description(k))).collect();
    let width = lines.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    for (assignment, comment) in lines {
        let _ = writeln!(out, "{assignment:width$}  # {comment}");
    }
}

/// One comment line per variant: `{ tag = "name", key = value, ... }  doc`.
fn variant_lines(tag: &str, variants: &[Variant], out: &mut String) {
    for v in variants {
        let keys: String = v.keys.iter().map(|k| format!(", {} = {}", k.name, value(k))).collect();
        let _ = writeln!(out, "#   {{ {tag} = \"{}\"{keys} }}\n#       {}", v.name, v.doc);
        for k in v.keys.iter().filter(|k| !k.doc.is_empty() || k.bound.is_some()) {
            let _ = writeln!(out, "#       {}: {}", k.name, description(k));
        }
    }
}

/// `dlcli config defaults`.
pub fn defaults_toml() -> String {
    let mut out = String::from(
        "# Every key dlcli reads, with its default (written from the declarations in dlcli's config.rs).\n\
         # This file is itself a valid config: it trains a small CNN on the shipped digits. Relative\n\
         # paths start at this file's directory. A key shown as <type> is required.\n\n[data]\n\
         # kind: where the data comes from, with the keys of each kind:\n",
    );
    let kinds = DataSource::variants();
    variant_lines("kind", &kinds, &mut out);
    let mut data: Vec<Key> = DataConfig::keys();
    let example = kinds.iter().find(|v| v.name == EXAMPLE_KIND).expect("the example kind is declared");
    data[0].default = Some(EXAMPLE_KIND.into());
    data.splice(1..1, example.keys.iter().cloned());
    assignments(&data, &mut out);

    out.push_str(
        "\n[model]\n# One table per layer, in order. Each reads the previous layer's output unless it lists\n\
         # `inputs` (residual and branching models). conv2d, linear, batch_norm and layer_norm layers\n\
         # name their parameters \"<name>.weight\" and \"<name>.bias\", as torch.nn does. Every layer:\n",
    );
    for key in LayerTable::keys() {
        let _ = writeln!(out, "#   {}: {}", key.name, description(&key));
    }
    out.push_str("# The layer types and their keys (the last layer must give [batch, classes]):\n");
    variant_lines("type", &LayerKind::variants(), &mut out);
    out.push_str(EXAMPLE_LAYERS);

    out.push_str("\n[train]\n");
    assignments(&TrainConfig::keys(), &mut out);
    out.push_str("\n[eval]\n");
    assignments(&EvalConfig::keys(), &mut out);
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn key_table(keys: &[Key], out: &mut String) {
    out.push_str("| key | type | default | |\n|---|---|---|---|\n");
    for k in keys {
        let default = k.default.as_ref().map_or(if k.optional { "optional" } else { "required" }.into(), |v| {
            format!("`{}`", to_toml(v).to_string().trim())
        });
        let _ = writeln!(out, "| `{}` | {} | {default} | {} |", k.name, cell(&k.kind_and_bound()), cell(&k.doc));
    }
}

fn variant_table(tag: &str, variants: &[Variant], out: &mut String) {
    let _ = writeln!(out, "| `{tag}` | keys (= default) | |\n|---|---|---|");
    for v in variants {
        let keys: Vec<String> = v.keys.iter().map(|k| format!("`{} = {}`", k.name, cell(&value(k)))).collect();
        let _ = writeln!(out, "| `\"{}\"` | {} | {} |", v.name, keys.join(", "), cell(&v.doc));
    }
}

/// `dlcli config defaults --markdown`: the README's key tables.
pub fn markdown() -> String {
    let mut out = String::from("#### `[data]`\n\n");
    key_table(&DataConfig::keys(), &mut out);
    out.push('\n');
    variant_table("kind", &DataSource::variants(), &mut out);
    out.push_str("\n#### `[[model.layers]]`\n\n");
    key_table(&LayerTable::keys(), &mut out);
    out.push('\n');
    variant_table("type", &LayerKind::variants(), &mut out);
    out.push_str("\n#### `[train]`\n\n");
    key_table(&TrainConfig::keys(), &mut out);
    out.push_str("\n#### `[eval]`\n\n");
    key_table(&EvalConfig::keys(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each declared key and variant is in the defaults file: assigned (the keys of [data], its
    /// example kind, [train] and [eval]) or in the comment of its variant.
    #[test]
    fn the_defaults_name_every_declared_key() {
        let text = defaults_toml();
        let sections = [DataConfig::keys(), TrainConfig::keys(), EvalConfig::keys()];
        for key in sections.iter().flatten() {
            assert!(text.lines().any(|l| l.starts_with(&format!("{} = ", key.name))), "{} is not assigned", key.name);
        }
        for (tag, variants) in [("kind", DataSource::variants()), ("type", LayerKind::variants())] {
            for v in variants {
                let line = text.lines().find(|l| l.contains(&format!("{{ {tag} = \"{}\"", v.name)));
                let line = line.unwrap_or_else(|| panic!("{tag} {:?} is not listed", v.name));
                for key in &v.keys {
                    assert!(
                        line.contains(&format!(" {} = ", key.name)),
                        "{}: {} missing from {line}",
                        v.name,
                        key.name
                    );
                }
            }
        }
    }
}
