//! How settings are declared: once each, with a type, a default (or none: required), an
//! allowed range and one line of docs. [`settings!`](crate::settings!) declares a table of
//! settings as a struct, [`variants!`](crate::variants!) a table whose settings depend on a tag
//! (`type = "conv2d"`, `kind = "digits"`) as an enum. Each layer type's settings are declared
//! this way (`spec.rs`), and so are dlcli's config tables. From the one declaration come the
//! typed value, its reading from any source of [`Fields`] (dlcli reads TOML, reporting every
//! problem with its position), its writing and its reference docs. Nothing here knows a file
//! format: values pass as [`Value`]s.

use std::fmt;
use std::path::PathBuf;

/// A setting's value as a source gives it, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A whole number.
    Integer(i64),
    /// A number.
    Float(f64),
    /// true or false.
    Bool(bool),
    /// A string (names, paths).
    String(String),
    /// A list.
    Array(Vec<Value>),
}

/// As a config writes the value: for messages ("expected a number, got \"x\"").
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(Value::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

/// Where a number must lie, stated as the error states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Any finite number.
    Finite,
    /// > 0
    Positive,
    /// >= 0
    NonNegative,
    /// >= 1
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

/// The deepest stack of recurrent or Transformer layers a setting may ask for (GPT-3 has 96).
pub const MAX_DEPTH: f64 = 1024.0;

/// The largest size or count a setting may give (2^40): any product of two stays far inside
/// 64 bits, and no memory holds more.
pub const MAX_SIZE: i64 = 1 << 40;

impl Bound {
    /// Whether `v` lies within the bound.
    pub fn holds(self, v: f64) -> bool {
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

    /// As an error states it ("must be at least 1").
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

/// What a setting's declaration says, for the reference.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key as a source writes it.
    pub name: &'static str,
    /// "integer", "number", "path", "\"sgd\" | \"adam\"", ...
    pub kind: String,
    /// The default as a source writes it; None: required (or, for an optional key, absent).
    pub default: Option<Value>,
    /// Whether it may be absent with no default.
    pub optional: bool,
    /// Where a number must lie.
    pub bound: Option<Bound>,
    /// One line of docs.
    pub doc: String,
}

impl Key {
    /// The declaration of a setting of type `T`.
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
    /// The tag's value.
    pub name: &'static str,
    /// One line of docs.
    pub doc: String,
    /// The variant's own keys.
    pub keys: Vec<Key>,
}

/// A type a setting can have.
pub trait Setting: Sized {
    /// How the type reads in the reference.
    fn kind() -> String;
    /// The value, or what is wrong with it ("expected a number, got \"x\"").
    fn read(value: &Value) -> Result<Self, String>;
    /// As a source writes it; None for an optional setting that is absent.
    fn write(&self) -> Option<Value>;
    /// The number a [`Bound`] checks.
    fn number(&self) -> Option<f64> {
        None
    }
    /// The value of an absent setting without a default: None means it is required.
    fn absent() -> Option<Self> {
        None
    }
}

/// [`Setting`] for a non-negative integer type whose values may reach `most`.
macro_rules! integer {
    ($t:ty, $most:expr) => {
        impl Setting for $t {
            fn kind() -> String {
                "integer".into()
            }
            fn read(value: &Value) -> Result<Self, String> {
                match *value {
                    Value::Integer(i) if (0..=$most).contains(&i) => Ok(i as $t),
                    Value::Integer(i) if i > $most => {
                        Err(format!("{i} is larger than any size a model can hold (at most {})", $most))
                    }
                    _ => Err(format!("expected a non-negative integer, got {value}")),
                }
            }
            fn write(&self) -> Option<Value> {
                Some(Value::Integer(*self as i64))
            }
            fn number(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    };
}

// Sizes and counts: at most MAX_SIZE. Steps, epochs and seeds: any i64 a TOML file holds.
integer!(usize, MAX_SIZE);
integer!(u64, i64::MAX);

impl Setting for f64 {
    fn kind() -> String {
        "number".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match *value {
            Value::Float(f) => Ok(f),
            Value::Integer(i) => Ok(i as f64),
            _ => Err(format!("expected a number, got {value}")),
        }
    }
    fn write(&self) -> Option<Value> {
        Some(Value::Float(*self))
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
    /// By its shortest form (0.1307, not 0.130700007...).
    fn write(&self) -> Option<Value> {
        Some(Value::Float(format!("{self}").parse::<f64>().unwrap_or(*self as f64)))
    }
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl Setting for bool {
    fn kind() -> String {
        "true or false".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match *value {
            Value::Bool(b) => Ok(b),
            _ => Err(format!("expected true or false, got {value}")),
        }
    }
    fn write(&self) -> Option<Value> {
        Some(Value::Bool(*self))
    }
}

impl Setting for String {
    fn kind() -> String {
        "string".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(format!("expected a string, got {value}")),
        }
    }
    fn write(&self) -> Option<Value> {
        Some(Value::String(self.clone()))
    }
}

impl Setting for PathBuf {
    fn kind() -> String {
        "path".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(PathBuf::from(s)),
            _ => Err(format!("expected a file path, got {value}")),
        }
    }
    fn write(&self) -> Option<Value> {
        Some(Value::String(self.display().to_string()))
    }
}

/// A list of strings (file paths, layer names).
fn strings(value: &Value, what: &str) -> Result<Vec<String>, String> {
    let wrong = || format!("expected an array of {what}, got {value}");
    let Value::Array(items) = value else { return Err(wrong()) };
    let string = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    items.iter().map(string).collect::<Option<Vec<_>>>().ok_or_else(wrong)
}

impl Setting for Vec<PathBuf> {
    fn kind() -> String {
        "list of paths".into()
    }
    fn read(value: &Value) -> Result<Self, String> {
        Ok(strings(value, "file paths")?.into_iter().map(PathBuf::from).collect())
    }
    fn write(&self) -> Option<Value> {
        Some(Value::Array(self.iter().map(|p| Value::String(p.display().to_string())).collect()))
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
        Some(Value::Array(self.iter().map(|s| Value::String(s.clone())).collect()))
    }
}

/// A setting that may be absent (written only when present).
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

/// A value that is one of a few names, parsed once into its enum: no later code matches on
/// the strings.
pub trait Named: Sized + Copy + PartialEq + 'static {
    /// Each name with its value.
    const ALL: &'static [(&'static str, Self)];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }

    /// Every name, in declaration order.
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(n, _)| *n).collect()
    }

    /// The value of `name`.
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

/// Where declared settings are read from: one table of a source (dlcli's TOML), which records
/// a problem for each value that is wrong and carries on, so that every problem is found at
/// once.
pub trait Fields {
    /// The value of `key` (at `path`): read and range-checked, else its default; None after
    /// a problem.
    fn setting<T: Setting>(&mut self, path: &str, key: &str, default: Option<T>, bound: Option<Bound>) -> Option<T>;

    /// Records a problem with `key` (at `path`), at the table where the key is absent.
    fn problem(&mut self, path: &str, key: &str, message: String);

    /// Records a problem for each key of the table that is not in `known`.
    fn unknown_keys(&mut self, path: &str, known: &[&str]);

    /// The variant of `T` that the tag key names, with its keys (added to `known`). `tag` is
    /// (key, default value, what the tag names in a message).
    fn tagged<T: Tagged>(
        &mut self,
        path: &str,
        (key, default, what): (&'static str, Option<&str>, &str),
        known: &mut Vec<&'static str>,
    ) -> Option<T>
    where
        Self: Sized,
    {
        known.push(key);
        let name: String = self.setting(path, key, default.map(str::to_string), None)?;
        let variants = T::variants();
        let Some(variant) = variants.iter().find(|v| v.name == name) else {
            let names: Vec<&str> = variants.iter().map(|v| v.name).collect();
            let detail = format!("unknown {what} {name:?}{}; expected one of {names:?}", did_you_mean(&name, &names));
            self.problem(path, key, detail);
            // Its own keys cannot be checked until the tag is known.
            known.extend(variants.iter().flat_map(|v| v.keys.iter().map(|k| k.name)));
            return None;
        };
        known.extend(variant.keys.iter().map(|k| k.name));
        T::read(&name, self, path)
    }
}

/// A table of settings, declared by [`settings!`](crate::settings!).
pub trait Section: Sized {
    /// Every key, in declaration order.
    fn keys() -> Vec<Key>;
    /// The typed table's keys read from `fields` (their names added to `known`), or None
    /// after recording its problems.
    fn read_known(fields: &mut impl Fields, path: &str, known: &mut Vec<&'static str>) -> Option<Self>;

    /// The typed table, every other key a problem.
    fn read(fields: &mut impl Fields, path: &str) -> Option<Self> {
        let mut known = Vec::new();
        let value = Self::read_known(fields, path, &mut known);
        fields.unknown_keys(path, &known);
        value
    }
    /// Every key, in declaration order, as a source writes it.
    fn write(&self) -> Vec<(&'static str, Value)>;
}

/// A table whose keys depend on the value of its tag key, declared by
/// [`variants!`](crate::variants!).
pub trait Tagged: Sized {
    /// Every variant: the tag's values with their keys.
    fn variants() -> Vec<Variant>;
    /// The variant `name`'s keys read from `fields` (`name` is one of the variants').
    fn read(name: &str, fields: &mut impl Fields, path: &str) -> Option<Self>;
    /// The tag's value and the variant's keys, as a source writes them.
    fn write(&self) -> (&'static str, Vec<(&'static str, Value)>);
}

/// `Some(x)` for one expression, `None` for none: an optional part of a declaration.
#[doc(hidden)]
#[macro_export]
macro_rules! optional {
    () => {
        None
    };
    ($e:expr) => {
        Some($e)
    };
}

/// Declares a table's settings as a struct:
///
/// ```text
/// graph::settings! {
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
#[macro_export]
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
            $(#[doc = concat!("What `", $tag, "` names, with its own keys.")] pub $tfield: $tty,)?
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl $crate::settings::Section for $name {
            fn keys() -> Vec<$crate::settings::Key> {
                #[allow(unused_mut)]
                let mut keys: Vec<$crate::settings::Key> = Vec::new();
                $(keys.push($crate::settings::Key::tag($tag, $tdefault, $what));)?
                keys.extend([$($crate::settings::Key::new::<$ty>(
                    $crate::settings::key_name(stringify!($field)),
                    concat!($($doc, " ",)*),
                    $crate::optional!($($default)?),
                    $crate::optional!($($bound)?),
                ),)*]);
                keys
            }

            fn read_known(
                fields: &mut impl $crate::settings::Fields,
                path: &str,
                known: &mut Vec<&'static str>,
            ) -> Option<Self> {
                known.extend([$($crate::settings::key_name(stringify!($field))),*]);
                $(let $tfield = fields.tagged::<$tty>(path, ($tag, $tdefault, $what), known);)?
                $(let $field: Option<$ty> = fields.setting(
                    path,
                    $crate::settings::key_name(stringify!($field)),
                    $crate::optional!($($default)?),
                    $crate::optional!($($bound)?),
                );)*
                Some($name { $($tfield: $tfield?,)? $($field: $field?,)* })
            }

            fn write(&self) -> Vec<(&'static str, $crate::settings::Value)> {
                let mut out = Vec::new();
                $(
                    let (tag, keys) = $crate::settings::Tagged::write(&self.$tfield);
                    out.push(($tag, tag.into()));
                    out.extend(keys);
                )?
                $(out.extend($crate::settings::Setting::write(&self.$field).map(|v| ($crate::settings::key_name(stringify!($field)), v)));)*
                out
            }
        }
    };
}

/// Declares a tagged table as an enum with one struct variant per tag value, each with its keys
/// declared as in [`settings!`](crate::settings!); after the variants, each `else Name(Type)`
/// adds a variant whose tag values and keys come from another [`Tagged`] type (a family of tag
/// values sharing keys). A variant without keys is written `Name {}` in patterns.
#[macro_export]
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
            $(#[doc = concat!("A tag value of `", stringify!($oty), "`'s family, with its keys.")] $other($oty),)*
        }

        impl $crate::settings::Tagged for $name {
            fn variants() -> Vec<$crate::settings::Variant> {
                #[allow(unused_mut)]
                let mut all = vec![$($crate::settings::Variant {
                    name: $vname,
                    doc: concat!($($vdoc, " ",)*).split_whitespace().collect::<Vec<_>>().join(" "),
                    keys: vec![$($crate::settings::Key::new::<$ty>(
                        $crate::settings::key_name(stringify!($field)),
                        concat!($($doc, " ",)*),
                        $crate::optional!($($default)?),
                        $crate::optional!($($bound)?),
                    ),)*],
                },)*];
                $(all.extend(<$oty as $crate::settings::Tagged>::variants());)*
                all
            }

            #[allow(unused_variables)]
            fn read(name: &str, fields: &mut impl $crate::settings::Fields, path: &str) -> Option<Self> {
                match name {
                    $($vname => {
                        $(let $field: Option<$ty> = fields.setting(
                            path,
                            $crate::settings::key_name(stringify!($field)),
                            $crate::optional!($($default)?),
                            $crate::optional!($($bound)?),
                        );)*
                        Some($name::$variant { $($field: $field?,)* })
                    })*
                    _ => {
                        $(if <$oty as $crate::settings::Tagged>::variants().iter().any(|v| v.name == name) {
                            return <$oty as $crate::settings::Tagged>::read(name, fields, path).map($name::$other);
                        })*
                        None
                    }
                }
            }

            fn write(&self) -> (&'static str, Vec<(&'static str, $crate::settings::Value)>) {
                match self {
                    $($name::$variant { $($field,)* } => {
                        #[allow(unused_mut)]
                        let mut out = Vec::new();
                        $(out.extend($crate::settings::Setting::write($field).map(|v| ($crate::settings::key_name(stringify!($field)), v)));)*
                        ($vname, out)
                    })*
                    $($name::$other(v) => <$oty as $crate::settings::Tagged>::write(v),)*
                }
            }
        }
    };
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

/// " (did you mean \"relu\"?)" for the choice nearest to `word`, when one is near.
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

/// `path.key`, or `key` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}
