//! Config files in TOML: settings declared once (`graph::settings`: in `config.rs` for the
//! config's own tables, in `graph::spec` for each layer type) are read from a TOML document
//! here, every problem reported at once with its file, line, column and key path, and written
//! back as TOML (the resolved config a run keeps, the reference docs).

use graph::settings::{Bound, Fields, Section, Setting, Value, did_you_mean, join};
use toml_edit::{Item, TableLike};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Line and column (from 1) where it is; None for the whole file.
    pub at: Option<(usize, usize)>,
    /// The key path ("model.layers[0].kernel"); empty for the whole file.
    pub key: String,
    pub message: String,
}

impl Problem {
    /// The problem as an error names it: "PATH:LINE:COLUMN: KEY: MESSAGE", without the
    /// parts it has not.
    pub fn named(&self, path: &std::path::Path) -> String {
        let at = self.at.map_or(String::new(), |(line, column)| format!(":{line}:{column}"));
        let key = if self.key.is_empty() { String::new() } else { format!(" {}:", self.key) };
        format!("{}{at}:{key} {}", path.display(), self.message)
    }
}

/// Reads typed values out of a document, recording a problem for each one that is wrong.
pub struct Reader<'t> {
    text: &'t str,
    pub problems: Vec<Problem>,
    /// Where the table being read starts: a missing key is reported there.
    pub here: Option<std::ops::Range<usize>>,
}

impl<'t> Reader<'t> {
    pub fn new(text: &'t str) -> Reader<'t> {
        Reader { text, problems: Vec::new(), here: None }
    }

    pub fn problem(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: String) {
        let at = span.map(|s| line_column(self.text, s.start));
        self.problems.push(Problem { at, key: key.to_string(), message });
    }

    /// Unknown keys of `table` (at `path`) are problems, with the nearest known key.
    pub fn unknown_keys(&mut self, table: &dyn TableLike, path: &str, known: &[&str]) {
        for (key, _) in table.iter() {
            if !known.contains(&key) {
                let span = table.key(key).and_then(|k| k.span());
                let hint = did_you_mean(key, known);
                self.problem(span, &join(path, key), format!("unknown key{hint}; expected one of {known:?}"));
            }
        }
    }

    /// A whole table of `S`'s keys.
    pub fn section<S: Section>(&mut self, parent: &dyn TableLike, key: &str) -> Option<S> {
        match parent.get(key) {
            Some(item) => match item.as_table_like() {
                Some(t) => {
                    self.here = item.span();
                    S::read(&mut Table { reader: self, table: t }, key)
                }
                None => {
                    self.problem(item.span(), key, "expected a table".into());
                    None
                }
            },
            None => S::read(&mut Table { reader: self, table: &toml_edit::Table::new() }, key),
        }
    }
}

/// One table of a document as [`Fields`] that declared settings are read from.
pub struct Table<'r, 't, 'd> {
    pub reader: &'r mut Reader<'t>,
    pub table: &'d dyn TableLike,
}

impl Fields for Table<'_, '_, '_> {
    fn setting<T: Setting>(&mut self, path: &str, key: &str, default: Option<T>, bound: Option<Bound>) -> Option<T> {
        let value = match self.table.get(key) {
            Some(Item::Value(v)) => v,
            Some(other) => {
                self.reader.problem(other.span(), &join(path, key), "expected a value, not a table".into());
                return None;
            }
            None => {
                let value = default.or_else(T::absent);
                if value.is_none() {
                    let here = self.reader.here.clone();
                    self.reader.problem(here, &join(path, key), "missing; this key is required".into());
                }
                return value;
            }
        };
        let Some(given) = from_toml(value) else {
            let detail = format!("expected {}, got {}", T::kind(), value.to_string().trim());
            self.reader.problem(value.span(), &join(path, key), detail);
            return None;
        };
        let read =
            T::read(&given).map_err(|message| self.reader.problem(value.span(), &join(path, key), message)).ok()?;
        match (bound, read.number()) {
            (Some(bound), Some(n)) if !bound.holds(n) => {
                self.reader.problem(value.span(), &join(path, key), format!("must be {}, got {n}", bound.text()));
                None
            }
            _ => Some(read),
        }
    }

    fn problem(&mut self, path: &str, key: &str, message: String) {
        let span = self.table.get(key).and_then(|i| i.span()).or(self.reader.here.clone());
        self.reader.problem(span, &join(path, key), message);
    }

    fn unknown_keys(&mut self, path: &str, known: &[&str]) {
        self.reader.unknown_keys(self.table, path, known);
    }
}

/// A TOML value as a declared setting reads it; None for what no setting is (a date, a table).
fn from_toml(value: &toml_edit::Value) -> Option<Value> {
    Some(match value {
        toml_edit::Value::Integer(i) => Value::Integer(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(from_toml).collect::<Option<_>>()?),
        toml_edit::Value::Datetime(_) | toml_edit::Value::InlineTable(_) => return None,
    })
}

/// A declared setting's value as TOML writes it.
pub fn to_toml(value: &Value) -> toml_edit::Value {
    match value {
        Value::Integer(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => toml_edit::Value::Array(items.iter().map(to_toml).collect()),
    }
}

/// Line and column (from 1) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}
