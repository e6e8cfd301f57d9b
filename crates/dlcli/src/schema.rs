//! How config keys are declared: once each, with a type, a default (or none: required), an
//! allowed range and one line of docs. `settings!` declares one table's keys as a struct;
//! `variants!` a table whose keys depend on a tag (`kind = "digits"`, `type = "conv2d"`) as an
//! enum. From the one declaration come the typed value, its reading (every problem reported with
//! file, line, column and key path), its writing (the resolved config a run keeps) and its
//! reference (`dlcli config defaults` and the README's key tables).

use std::path::PathBuf;

use toml_edit::{Item, TableLike, Value};

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

/// Where a number must lie, stated as the error states it.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Any finite number.
    Finite,
    Positive,
    NonNegative,
    AtLeastOne,
    /// [0, 1)
    Fraction,
    /// (0, 1)
    OpenFraction,
    /// [0, 1]
    Probability,
    /// A stack's depth, 1 to [`MAX_DEPTH`]: each layer is graph nodes built before any memory
    /// estimate can weigh them, so an absurd count must be refused up front.
    Depth,
}

/// The deepest stack of recurrent or Transformer layers a config may ask for (GPT-3 has 96).
pub const MAX_DEPTH: f64 = 1024.0;

impl Bound {
    fn holds(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Bound::Finite => true,
                Bound::Positive => v > 0.0,
                Bound::NonNegative => v >= 0.0,
                Bound::AtLeastOne => v >= 1.0,
                Bound::Fraction => (0.0..1.0).contains(&v),
                Bound::OpenFraction => v > 0.0 && v < 1.0,
                Bound::Probability => (0.0..=1.0).contains(&v),
                Bound::Depth => (1.0..=MAX_DEPTH).contains(&v),
            }
    }

    /// As the reference writes it after the type.
    fn short(self) -> &'static str {
        match self {
            Bound::Finite => "",
            Bound::Positive => "> 0",
            Bound::NonNegative => ">= 0",
            Bound::AtLeastOne => ">= 1",
            Bound::Fraction => "in [0, 1)",
            Bound::OpenFraction => "in (0, 1)",
            Bound::Probability => "in [0, 1]",
            Bound::Depth => "in 1..=1024",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Bound::Finite => "a finite number",
            Bound::Positive => "a positive number",
            Bound::NonNegative => "zero or more",
            Bound::AtLeastOne => "at least 1",
            Bound::Fraction => "in [0, 1)",
            Bound::OpenFraction => "in (0, 1)",
            Bound::Probability => "in [0, 1]",
            Bound::Depth => "from 1 to 1024",
        }
    }
}

/// What a key's declaration says, for the reference.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: &'static str,
    /// "integer", "number", "path", "\"sgd\" | \"adam\"", ...
    pub kind: String,
    /// The default as the config writes it; None: required (or, for an optional key, absent).
    pub default: Option<Value>,
    pub optional: bool,
    pub bound: Option<Bound>,
    pub doc: String,
}

impl Key {
    pub fn new<T: Setting>(name: &'static str, doc: &str, default: Option<T>, bound: Option<Bound>) -> Key {
        Key {
            name,
            kind: T::kind(),
            default: default.and_then(|d| d.write()),
            optional: T::absent().is_some(),
            bound,
            doc: doc.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// The key that picks a tagged table's variant (`kind`, `type`).
    pub fn tag(name: &'static str, default: Option<&str>, what: &str) -> Key {
        Key {
            name,
            kind: "string".into(),
            default: default.map(Value::from),
            optional: false,
            bound: None,
            doc: format!("The {what}: one of those below, each with its own keys."),
        }
    }

    /// "integer >= 1", "number in [0, 1)".
    pub fn kind_and_bound(&self) -> String {
        match self.bound {
            Some(Bound::Finite) | None => self.kind.clone(),
            Some(b) => format!("{} {}", self.kind, b.short()),
        }
    }
}

/// One variant of a tagged table: the tag's value, its docs and its own keys.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: &'static str,
    pub doc: String,
    pub keys: Vec<Key>,
}

/// A type a config key can have.
pub trait Setting: Sized {
    /// How the type reads in the reference.
    fn kind() -> String;
    /// The value, or what is wrong with it ("expected a number, got \"x\"").
    fn read(value: &Value) -> Result<Self, String>;
    /// As the config writes it; None for an optional key that is absent.
    fn write(&self) -> Option<Value>;
    /// The number a [`Bound`] checks.
    fn number(&self) -> Option<f64> {
        None
    }
    /// The value of an absent key without a default: None means the key is required.
    fn absent() -> Option<Self> {
        None
    }
}

fn got(value: &Value) -> String {
    value.to_string().trim().to_string()
}

/// The largest size or count a config may give (2^40): any product of two stays far inside
/// 64 bits, and no memory holds more.
pub const MAX_SIZE: i64 = 1 << 40;

impl Setting for usize {
    fn kind() -> String {
        "integer".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value.as_integer() {
            Some(i) if (0..=MAX_SIZE).contains(&i) => Ok(i as usize),
            Some(i) if i > MAX_SIZE => {
                Err(format!("{i} is larger than any size a model can hold (at most {MAX_SIZE})"))
            }
            _ => Err(format!("expected a non-negative integer, got {}", got(value))),
        }
    }
    fn write(&self) -> Option<Value> {
        Some((*self as i64).into())
    }
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl Setting for u64 {
    fn kind() -> String {
        usize::kind()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value.as_integer() {
            Some(i) if i >= 0 => Ok(i as u64),
            _ => Err(format!("expected a non-negative integer, got {}", got(value))),
        }
    }
    fn write(&self) -> Option<Value> {
        Some((*self as i64).into())
    }
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl Setting for f64 {
    fn kind() -> String {
        "number".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match (value.as_float(), value.as_integer()) {
            (Some(f), _) => Ok(f),
            (_, Some(i)) => Ok(i as f64),
            _ => Err(format!("expected a number, got {}", got(value))),
        }
    }
    fn write(&self) -> Option<Value> {
        Some((*self).into())
    }
    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

impl Setting for f32 {
    fn kind() -> String {
        f64::kind()
    }
    fn read(value: &Value) -> Result<Self, String> {
        f64::read(value).map(|v| v as f32)
    }
    fn write(&self) -> Option<Value> {
        Some(shortest(*self).into())
    }
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

/// An f32 by its shortest form (0.1307, not 0.130700007...).
fn shortest(x: f32) -> f64 {
    format!("{x}").parse::<f64>().unwrap_or(x as f64)
}

impl Setting for bool {
    fn kind() -> String {
        "true or false".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        value.as_bool().ok_or_else(|| format!("expected true or false, got {}", got(value)))
    }
    fn write(&self) -> Option<Value> {
        Some((*self).into())
    }
}

impl Setting for String {
    fn kind() -> String {
        "string".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        value.as_str().map(str::to_string).ok_or_else(|| format!("expected a string, got {}", got(value)))
    }
    fn write(&self) -> Option<Value> {
        Some(self.as_str().into())
    }
}

impl Setting for PathBuf {
    fn kind() -> String {
        "path".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        value.as_str().map(PathBuf::from).ok_or_else(|| format!("expected a file path, got {}", got(value)))
    }
    fn write(&self) -> Option<Value> {
        Some(self.display().to_string().into())
    }
}

/// A list of strings (file paths, layer names).
fn strings(value: &Value, what: &str) -> Result<Vec<String>, String> {
    match value.as_array() {
        Some(a) if a.iter().all(|v| v.as_str().is_some()) => {
            Ok(a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        }
        _ => Err(format!("expected an array of {what}, got {}", got(value))),
    }
}

impl Setting for Vec<PathBuf> {
    fn kind() -> String {
        "list of paths".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        Ok(strings(value, "file paths")?.into_iter().map(PathBuf::from).collect())
    }
    fn write(&self) -> Option<Value> {
        Some(Value::Array(self.iter().map(|p| p.display().to_string()).collect()))
    }
}

impl Setting for Vec<String> {
    fn kind() -> String {
        "list of strings".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        strings(value, "strings")
    }
    fn write(&self) -> Option<Value> {
        Some(Value::Array(self.iter().map(String::as_str).collect()))
    }
}

/// A key that may be absent (written only when present).
impl<T: Setting> Setting for Option<T> {
    fn kind() -> String {
        T::kind()
    }
    fn read(value: &Value) -> Result<Self, String> {
        T::read(value).map(Some)
    }
    fn write(&self) -> Option<Value> {
        self.as_ref().and_then(T::write)
    }
    fn number(&self) -> Option<f64> {
        self.as_ref().and_then(T::number)
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// A config value that is one of a few names, parsed once into its enum: no later code
/// matches on the strings.
pub trait Named: Sized + Copy + PartialEq + 'static {
    const ALL: &'static [(&'static str, Self)];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(n, _)| *n).collect()
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

impl<T: Named> Setting for T {
    fn kind() -> String {
        T::names().iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" | ")
    }
    fn read(value: &Value) -> Result<Self, String> {
        let name = String::read(value)?;
        T::parse(&name).ok_or_else(|| {
            let names = T::names();
            format!("{name:?} is not one of {names:?}{}", did_you_mean(&name, &names))
        })
    }
    fn write(&self) -> Option<Value> {
        Some(self.name().into())
    }
}

/// A table's keys, declared by `settings!`.
pub trait Section: Sized {
    fn keys() -> Vec<Key>;
    /// The typed table's keys read from `t` (their names added to `known`), or None after
    /// recording its problems.
    fn read_known(r: &mut Reader, t: &dyn TableLike, path: &str, known: &mut Vec<&'static str>) -> Option<Self>;

    /// The typed table, every other key of `t` a problem.
    fn read(r: &mut Reader, t: &dyn TableLike, path: &str) -> Option<Self> {
        let mut known = Vec::new();
        let value = Self::read_known(r, t, path, &mut known);
        r.unknown_keys(t, path, &known);
        value
    }
    /// Every key, in declaration order, as the config writes it.
    fn write(&self) -> Vec<(&'static str, Value)>;
}

/// A table whose keys depend on the value of its tag key, declared by `variants!`.
pub trait Tagged: Sized {
    fn variants() -> Vec<Variant>;
    /// The variant `name`'s keys read from `t` (`name` is one of the variants').
    fn read(name: &str, r: &mut Reader, t: &dyn TableLike, path: &str) -> Option<Self>;
    /// The tag's value and the variant's keys, as the config writes them.
    fn write(&self) -> (&'static str, Vec<(&'static str, Value)>);
}

/// `Some(x)` for one expression, `None` for none: an optional part of a declaration.
macro_rules! optional {
    () => {
        None
    };
    ($e:expr) => {
        Some($e)
    };
}
pub(crate) use optional;

/// Declares a table's keys as a struct:
///
/// ```text
/// settings! {
///     /// `[train]`
///     pub struct TrainConfig {
///         /// one line of docs
///         epochs: u64 = 2, Bound::AtLeastOne;   // type, default, range
///         kernel: usize, Bound::AtLeastOne;     // no default: required
///     }
/// }
/// ```
///
/// A first line `#[tagged] source: DataSource = ("kind", Some("idx"), "data kind");` reads a
/// [`Tagged`] field from the same table: its tag key, the tag's default, and what the tag names
/// in a message.
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(#[tagged] $tfield:ident: $tty:ty = ($tag:literal, $tdefault:expr, $what:literal);)?
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty $(= $default:expr)? $(, $bound:expr)?;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(pub $tfield: $tty,)?
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl $crate::schema::Section for $name {
            fn keys() -> Vec<$crate::schema::Key> {
                #[allow(unused_mut)]
                let mut keys: Vec<$crate::schema::Key> = Vec::new();
                $(keys.push($crate::schema::Key::tag($tag, $tdefault, $what));)?
                keys.extend([$($crate::schema::Key::new::<$ty>(
                    $crate::schema::key_name(stringify!($field)),
                    concat!($($doc, " ",)*),
                    $crate::schema::optional!($($default)?),
                    $crate::schema::optional!($($bound)?),
                ),)*]);
                keys
            }

            fn read_known(
                r: &mut $crate::schema::Reader,
                t: &dyn toml_edit::TableLike,
                path: &str,
                known: &mut Vec<&'static str>,
            ) -> Option<Self> {
                known.extend([$($crate::schema::key_name(stringify!($field))),*]);
                $(let $tfield = r.tagged::<$tty>(t, path, ($tag, $tdefault, $what), known);)?
                $(let $field: Option<$ty> = r.setting(
                    t,
                    path,
                    $crate::schema::key_name(stringify!($field)),
                    $crate::schema::optional!($($default)?),
                    $crate::schema::optional!($($bound)?),
                );)*
                Some($name { $($tfield: $tfield?,)? $($field: $field?,)* })
            }

            fn write(&self) -> Vec<(&'static str, toml_edit::Value)> {
                let mut out = Vec::new();
                $(
                    let (tag, keys) = $crate::schema::Tagged::write(&self.$tfield);
                    out.push(($tag, tag.into()));
                    out.extend(keys);
                )?
                $(out.extend($crate::schema::Setting::write(&self.$field).map(|v| ($crate::schema::key_name(stringify!($field)), v)));)*
                out
            }
        }
    };
}
pub(crate) use settings;

/// Declares a tagged table as an enum with one struct variant per tag value, each with its keys
/// declared as in [`settings!`]; after the variants, each `else Name(Type)` adds a variant whose
/// tag values and keys come from another [`Tagged`] type (a family of tag values sharing keys).
/// A variant without keys is written `Name {}` in patterns.
macro_rules! variants {
    (
        $(#[doc = $edoc:literal])*
        pub enum $name:ident {
            $(
                $(#[doc = $vdoc:literal])*
                $variant:ident = $vname:literal {
                    $(
                        $(#[doc = $doc:literal])*
                        $field:ident: $ty:ty $(= $default:expr)? $(, $bound:expr)?;
                    )*
                }
            )*
        }
        $(else $other:ident($oty:ty))*
    ) => {
        $(#[doc = $edoc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($(#[doc = $vdoc])* $variant { $($(#[doc = $doc])* $field: $ty,)* },)*
            $($other($oty),)*
        }

        impl $crate::schema::Tagged for $name {
            fn variants() -> Vec<$crate::schema::Variant> {
                #[allow(unused_mut)]
                let mut all = vec![$($crate::schema::Variant {
                    name: $vname,
                    doc: concat!($($vdoc, " ",)*).split_whitespace().collect::<Vec<_>>().join(" "),
                    keys: vec![$($crate::schema::Key::new::<$ty>(
                        $crate::schema::key_name(stringify!($field)),
                        concat!($($doc, " ",)*),
                        $crate::schema::optional!($($default)?),
                        $crate::schema::optional!($($bound)?),
                    ),)*],
                },)*];
                $(all.extend(<$oty as $crate::schema::Tagged>::variants());)*
                all
            }

            #[allow(unused_variables)]
            fn read(name: &str, r: &mut $crate::schema::Reader, t: &dyn toml_edit::TableLike, path: &str) -> Option<Self> {
                match name {
                    $($vname => {
                        $(let $field: Option<$ty> = r.setting(
                            t,
                            path,
                            $crate::schema::key_name(stringify!($field)),
                            $crate::schema::optional!($($default)?),
                            $crate::schema::optional!($($bound)?),
                        );)*
                        Some($name::$variant { $($field: $field?,)* })
                    })*
                    _ => {
                        $(if <$oty as $crate::schema::Tagged>::variants().iter().any(|v| v.name == name) {
                            return <$oty as $crate::schema::Tagged>::read(name, r, t, path).map($name::$other);
                        })*
                        None
                    }
                }
            }

            fn write(&self) -> (&'static str, Vec<(&'static str, toml_edit::Value)>) {
                match self {
                    $($name::$variant { $($field,)* } => {
                        #[allow(unused_mut)]
                        let mut out = Vec::new();
                        $(out.extend($crate::schema::Setting::write($field).map(|v| ($crate::schema::key_name(stringify!($field)), v)));)*
                        ($vname, out)
                    })*
                    $($name::$other(v) => <$oty as $crate::schema::Tagged>::write(v),)*
                }
            }
        }
    };
}
pub(crate) use variants;

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

    /// The key's value: read, range-checked, else its default; None after a problem.
    pub fn setting<T: Setting>(
        &mut self,
        t: &dyn TableLike,
        path: &str,
        key: &str,
        default: Option<T>,
        bound: Option<Bound>,
    ) -> Option<T> {
        let value = match t.get(key) {
            Some(Item::Value(v)) => v,
            Some(other) => {
                self.problem(other.span(), &join(path, key), "expected a value, not a table".into());
                return None;
            }
            None => {
                let value = default.or_else(T::absent);
                if value.is_none() {
                    self.problem(self.here.clone(), &join(path, key), "missing; this key is required".into());
                }
                return value;
            }
        };
        let read = T::read(value).map_err(|message| self.problem(value.span(), &join(path, key), message)).ok()?;
        match (bound, read.number()) {
            (Some(bound), Some(n)) if !bound.holds(n) => {
                self.problem(value.span(), &join(path, key), format!("must be {}, got {n}", bound.text()));
                None
            }
            _ => Some(read),
        }
    }

    /// The variant of `T` that the tag key names, with its keys (added to `known`). `tag` is
    /// (key, default value, what the tag names in a message).
    pub fn tagged<T: Tagged>(
        &mut self,
        t: &dyn TableLike,
        path: &str,
        (key, default, what): (&'static str, Option<&str>, &str),
        known: &mut Vec<&'static str>,
    ) -> Option<T> {
        known.push(key);
        let name: String = self.setting(t, path, key, default.map(str::to_string), None)?;
        let variants = T::variants();
        let Some(variant) = variants.iter().find(|v| v.name == name) else {
            let names: Vec<&str> = variants.iter().map(|v| v.name).collect();
            let span = t.get(key).and_then(|i| i.span());
            let detail = format!("unknown {what} {name:?}{}; expected one of {names:?}", did_you_mean(&name, &names));
            self.problem(span, &join(path, key), detail);
            // Its own keys cannot be checked until the tag is known.
            known.extend(variants.iter().flat_map(|v| v.keys.iter().map(|k| k.name)));
            return None;
        };
        known.extend(variant.keys.iter().map(|k| k.name));
        T::read(&name, self, t, path)
    }

    /// A whole table of `S`'s keys.
    pub fn section<S: Section>(&mut self, parent: &dyn TableLike, key: &str) -> Option<S> {
        match parent.get(key) {
            Some(item) => match item.as_table_like() {
                Some(t) => {
                    self.here = item.span();
                    S::read(self, t, key)
                }
                None => {
                    self.problem(item.span(), key, "expected a table".into());
                    None
                }
            },
            None => S::read(self, &toml_edit::Table::new(), key),
        }
    }
}

pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Levenshtein distance, for did-you-mean.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != b[j]) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn did_you_mean(word: &str, choices: &[&str]) -> String {
    match choices.iter().min_by_key(|c| distance(word, c)) {
        Some(best) if distance(word, best) <= 2.max(word.len() / 3) => format!(" (did you mean {best:?}?)"),
        _ => String::new(),
    }
}

/// A declared field's key: its name without a raw identifier's `r#` (`r#return` is `return`).
pub fn key_name(field: &'static str) -> &'static str {
    field.strip_prefix("r#").unwrap_or(field)
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}
