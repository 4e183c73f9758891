//! Turning TOML and validation failures into messages that name the file,
//! the line and the key — without ever quoting a secret value.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserializer as _;
use serde::de::{Error as _, IntoDeserializer as _};
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

/// Keys whose values are secrets: an error on their line never shows the
/// value. A bare name matches that key in any section (and any key below a
/// table of that name: `[webhook.headers]`); a dotted name matches exactly
/// (`webhook.url`: incoming-webhook URLs are secrets, other URLs are not).
pub const SECRET_KEYS: &[&str] = &[
    "bot_token",
    "token",
    "password",
    "auth_token",
    "api_key",
    "totp_secret",
    "headers",
    "webhook.url",
];

/// A problem in a config or users file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted key the problem is about, when known (`telegram.bot_token`).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ParseError {}

/// Byte offset to 1-based line number.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The bare key written on a line (`bot_token = "..."` gives `bot_token`).
fn key_on_line(line: &str) -> Option<String> {
    let (left, _) = line.split_once('=')?;
    let key = left.trim().trim_matches('"').trim_matches('\'');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        None
    } else {
        Some(key.to_string())
    }
}

/// The key on 1-based `line`, prefixed by the `[section]` it sits in.
fn dotted_key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key = key_on_line(lines.get(line.checked_sub(1)?)?)?;
    let section = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        let name = l.strip_prefix('[')?.strip_suffix(']')?;
        Some(
            name.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        )
    });
    Some(match section {
        Some(s) if !s.is_empty() => format!("{s}.{key}"),
        _ => key,
    })
}

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key) || key.split('.').any(|part| SECRET_KEYS.contains(&part))
}

/// Parses `text` as `T`, mapping failures to a [`ParseError`] that names the
/// line and key. The message never includes the offending line itself (the
/// toml crate's default rendering would quote a token).
pub fn parse<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ParseError> {
    toml::from_str::<T>(text).map_err(|err| error_at(file, text, err.span(), err.message()))
}

/// The [`ParseError`] for a TOML or serde failure at byte range `span` of
/// `text`: its line, the dotted key written there, and `message` unless
/// that key holds a secret.
fn error_at(file: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> ParseError {
    let line = span.map(|s| line_at(text, s.start));
    // On a `[section]` line (a missing field) the section is the key.
    let key = line.and_then(|l| {
        dotted_key_at(text, l).or_else(|| {
            let header = text.lines().nth(l - 1)?.trim();
            let name = header.strip_prefix('[')?.strip_suffix(']')?;
            Some(
                name.trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string(),
            )
        })
    });
    let mut message = message.trim().to_string();
    if key.as_deref().is_some_and(is_secret_key) {
        message = "invalid value (not shown: this key holds a secret)".to_string();
    }
    ParseError {
        file: file.to_path_buf(),
        line,
        key,
        message,
    }
}

/// A value of a TOML file -- a whole `[section]`, a recipient -- parsed but
/// not yet deserialized. Whoever knows its type deserializes it, and its
/// errors name line and key exactly as [`parse`] would for the whole file:
/// config and users parse their top level key by key, and hand each
/// gateway its own section.
pub struct TomlItem<'a> {
    file: &'a Path,
    text: &'a str,
    value: Spanned<DeValue<'a>>,
}

/// One `key = value` (or `[key]` table) of a TOML table, in the file's order.
pub struct TomlEntry<'a> {
    key: Spanned<DeString<'a>>,
    pub value: TomlItem<'a>,
}

impl<'a> TomlItem<'a> {
    /// The value as `T`, or serde's error at its line.
    pub fn deserialize<T: serde::de::DeserializeOwned>(self) -> Result<T, ParseError> {
        let span = self.value.span();
        T::deserialize(self.value.into_deserializer())
            .map_err(|e| error_at(self.file, self.text, e.span().or(Some(span)), e.message()))
    }

    /// Reads this value as `#[derive(Deserialize)] enum {name}` of unit
    /// variants named `variants` would be read: the variant's index.
    pub fn read_variant(
        self,
        name: &'static str,
        variants: &'static [&'static str],
    ) -> Result<usize, ParseError> {
        let span = self.value.span();
        self.value
            .into_deserializer()
            .deserialize_enum(name, variants, Variants { name, variants })
            .map_err(|e| error_at(self.file, self.text, e.span().or(Some(span)), e.message()))
    }

    /// Reads this value as `#[derive(Deserialize)] struct {name}` with
    /// `fields` would be read: a table key by key (an unknown key is
    /// serde's error), an array field by field, anything else serde's
    /// error. `field` reads each value, given its field's name.
    pub fn read_struct(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        field: &mut dyn FnMut(&'static str, TomlItem<'a>) -> Result<(), ParseError>,
    ) -> Result<MissingField<'a>, ParseError> {
        let (file, text, span) = (self.file, self.text, self.value.span());
        let missing = MissingField {
            file,
            text,
            span: span.clone(),
        };
        match self.value.into_inner() {
            DeValue::Table(table) => {
                for entry in entries(file, text, table) {
                    match fields.iter().find(|f| **f == entry.key()) {
                        Some(f) => field(f, entry.value)?,
                        None => return Err(entry.unknown(fields)),
                    }
                }
                Ok(missing)
            }
            DeValue::Array(array) => {
                let len = array.len();
                for (f, value) in fields.iter().zip(array) {
                    field(f, TomlItem { file, text, value })?;
                }
                if len < fields.len() {
                    // serde's words: "with 1 element", "with 5 elements".
                    let plural = if fields.len() == 1 { "" } else { "s" };
                    let expected = format!("struct {name} with {} element{plural}", fields.len());
                    let err = toml::de::Error::invalid_length(len, &expected.as_str());
                    return Err(error_at(file, text, Some(span), err.message()));
                }
                Ok(missing)
            }
            other => Err(Spanned::new(span, other).probe(file, text, Shape::Struct(name, fields))),
        }
    }

    /// Reads this value as a map from names to `#[derive(Deserialize)]
    /// struct {name}` with `fields` would be read: a table entry by entry
    /// (`entry` reads each), anything else serde's error.
    pub fn read_map(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        mut entry: impl FnMut(TomlEntry<'a>) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        let (file, text, span) = (self.file, self.text, self.value.span());
        match self.value.into_inner() {
            DeValue::Table(table) => entries(file, text, table).try_for_each(&mut entry),
            other => Err(Spanned::new(span, other).probe(file, text, Shape::MapOf(name, fields))),
        }
    }
}

/// Where a struct read by [`TomlItem::read_struct`] is, for the error
/// about a key it lacks.
pub struct MissingField<'a> {
    file: &'a Path,
    text: &'a str,
    span: Range<usize>,
}

impl MissingField<'_> {
    /// serde's "missing field `name`", at the struct's table.
    pub fn error(&self, name: &'static str) -> ParseError {
        let err = toml::de::Error::missing_field(name);
        error_at(self.file, self.text, Some(self.span.clone()), err.message())
    }
}

/// The type of a field of a `toml_struct!`: how its value is read, and
/// what an absent key gives (`None`: serde's "missing field" error).
pub trait TomlField: Sized {
    fn read(item: TomlItem<'_>) -> Result<Self, ParseError>;

    fn absent() -> Option<Self> {
        None
    }
}

/// An optional key: absent is `None`, present is read as `T`, as serde
/// reads an `Option` from TOML.
impl<T: TomlField> TomlField for Option<T> {
    fn read(item: TomlItem<'_>) -> Result<Self, ParseError> {
        T::read(item).map(Some)
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// [`TomlField`] for types read by their `Deserialize` implementation.
macro_rules! toml_fields {
    ($($ty:ty),+ $(,)?) => {
        $(impl $crate::toml_errors::TomlField for $ty {
            fn read(
                item: $crate::toml_errors::TomlItem<'_>,
            ) -> Result<Self, $crate::toml_errors::ParseError> {
                item.deserialize()
            }
        })+
    };
}

toml_fields!(
    String,
    bool,
    u32,
    u64,
    Vec<String>,
    Vec<i64>,
    std::collections::BTreeMap<String, String>,
);

/// [`TomlField`] for an enum of unit variants, read as `#[derive(Deserialize)]`
/// reads it (`FailMode { "secure" => Secure, "safe" => Safe }`, the
/// variants in their order and with their serde names), through
/// [`TomlItem::read_variant`]: one copy of serde's enum reading for all.
macro_rules! toml_enum {
    ($name:ident { $($text:literal => $variant:ident),+ $(,)? }) => {
        impl $crate::toml_errors::TomlField for $name {
            fn read(
                item: $crate::toml_errors::TomlItem<'_>,
            ) -> Result<Self, $crate::toml_errors::ParseError> {
                const VARIANTS: &[&str] = &[$($text),+];
                const VALUES: &[$name] = &[$($name::$variant),+];
                // An index into VARIANTS, as long as VALUES.
                let index = item.read_variant(stringify!($name), VARIANTS)?;
                Ok(VALUES[index])
            }
        }
    };
}
pub(crate) use toml_enum;

/// What serde's derive generates to read a unit-only enum, for the enum
/// `name` with `variants` given at run time: the variant's index.
#[derive(Clone, Copy)]
struct Variants {
    name: &'static str,
    variants: &'static [&'static str],
}

impl<'de> serde::de::Visitor<'de> for Variants {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enum {}", self.name)
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<usize, A::Error> {
        use serde::de::VariantAccess as _;
        let (index, variant) = data.variant_seed(VariantName(self.variants))?;
        variant.unit_variant()?;
        Ok(index)
    }
}

/// A variant's name (or index) among `.0`, as serde's derived
/// `__Field` reads it.
#[derive(Clone, Copy)]
struct VariantName(&'static [&'static str]);

impl<'de> serde::de::DeserializeSeed<'de> for VariantName {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> serde::de::Visitor<'de> for VariantName {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("variant identifier")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<usize, E> {
        match usize::try_from(v) {
            Ok(i) if i < self.0.len() => Ok(i),
            _ => Err(E::invalid_value(
                serde::de::Unexpected::Unsigned(v),
                &format!("variant index 0 <= i < {}", self.0.len()).as_str(),
            )),
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<usize, E> {
        self.0
            .iter()
            .position(|name| *name == v)
            .ok_or_else(|| E::unknown_variant(v, self.0))
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<usize, E> {
        self.visit_str(&String::from_utf8_lossy(v))
    }
}

/// A struct of `gateway.toml` read key by key, with every message of a
/// `#[derive(Deserialize)] #[serde(deny_unknown_fields)]` struct (unknown,
/// missing and mistyped keys, other shapes), without one copy of serde's
/// generated visitor per struct in the module: its `read` goes through
/// [`TomlItem::read_struct`] and one [`TomlField::read`] per field type.
macro_rules! toml_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty,)+
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $field: $ty,)+
        }

        impl $name {
            /// Reads `item` as serde would read this struct.
            $vis fn read(
                item: $crate::toml_errors::TomlItem<'_>,
            ) -> Result<Self, $crate::toml_errors::ParseError> {
                use $crate::toml_errors::TomlField as _;
                const FIELDS: &[&str] = &[$(stringify!($field)),+];
                $(let mut $field: Option<$ty> = None;)+
                let missing = item.read_struct(stringify!($name), FIELDS, &mut |key, value| {
                    match key {
                        $(stringify!($field) => $field = Some(<$ty>::read(value)?),)+
                        _ => {}
                    }
                    Ok(())
                })?;
                // In the order of the fields, as serde reports the first
                // missing one.
                Ok($name {
                    $($field: match $field.or_else(<$ty>::absent) {
                        Some(value) => value,
                        None => return Err(missing.error(stringify!($field))),
                    },)+
                })
            }
        }

        /// As the type of a field of another such struct.
        impl $crate::toml_errors::TomlField for $name {
            fn read(
                item: $crate::toml_errors::TomlItem<'_>,
            ) -> Result<Self, $crate::toml_errors::ParseError> {
                $name::read(item)
            }
        }
    };
}
pub(crate) use toml_struct;

/// The entries of `table`, in the order serde visits them.
fn entries<'a>(
    file: &'a Path,
    text: &'a str,
    table: DeTable<'a>,
) -> impl Iterator<Item = TomlEntry<'a>> {
    table.into_iter().map(move |(key, value)| TomlEntry {
        key,
        value: TomlItem { file, text, value },
    })
}

/// A value's shape that a `#[derive(Deserialize)]` type expects: a struct
/// (its name and fields), or a map of such structs.
#[derive(Clone, Copy)]
enum Shape {
    Struct(&'static str, &'static [&'static str]),
    MapOf(&'static str, &'static [&'static str]),
}

trait Probe {
    /// serde's error for this value, which is not of `shape`.
    fn probe(self, file: &Path, text: &str, shape: Shape) -> ParseError;
}

impl Probe for Spanned<DeValue<'_>> {
    fn probe(self, file: &Path, text: &str, shape: Shape) -> ParseError {
        let err = match self.into_deserializer().deserialize_any(shape) {
            Ok(()) => toml::de::Error::custom("invalid value"),
            Err(e) => e,
        };
        error_at(file, text, err.span(), err.message())
    }
}

/// Fails as the derived visitor of the shape would on a value that is not
/// a table: "invalid type: ..., expected struct RawUser", and, for the
/// map toml makes of a date, "unknown field `$__toml_private_datetime`".
impl<'de> serde::de::Visitor<'de> for Shape {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Struct(name, _) => write!(f, "struct {name}"),
            Shape::MapOf(..) => f.write_str("a map"),
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match self {
                Shape::Struct(_, fields) if !fields.contains(&key.as_str()) => {
                    return Err(A::Error::unknown_field(&key, fields));
                }
                Shape::Struct(..) => map.next_value::<serde::de::IgnoredAny>().map(|_| ())?,
                Shape::MapOf(name, fields) => map.next_value_seed(Shape::Struct(name, fields))?,
            }
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Shape {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> TomlEntry<'a> {
    pub fn key(&self) -> &str {
        self.key.get_ref()
    }

    /// serde's error for a key that is none of `expected`, at the key.
    pub fn unknown(&self, expected: &'static [&'static str]) -> ParseError {
        let err = toml::de::Error::unknown_field(self.key(), expected);
        error_at(
            self.file(),
            self.value.text,
            Some(self.key.span()),
            err.message(),
        )
    }

    fn file(&self) -> &'a Path {
        self.value.file
    }
}

/// The top-level entries of the TOML file `text`, in the order serde
/// visits them, or its syntax error.
pub fn parse_entries<'a>(file: &'a Path, text: &'a str) -> Result<Vec<TomlEntry<'a>>, ParseError> {
    let root = DeTable::parse(text).map_err(|e| error_at(file, text, e.span(), e.message()))?;
    Ok(entries(file, text, root.into_inner()).collect())
}

impl<'a> TomlItem<'a> {
    /// `entries` (from one table of `file`) as one table: the keys a
    /// struct reads together.
    pub fn table(file: &'a Path, text: &'a str, entries: Vec<TomlEntry<'a>>) -> TomlItem<'a> {
        let mut table = DeTable::new();
        for entry in entries {
            table.insert(entry.key, entry.value.value);
        }
        TomlItem {
            file,
            text,
            value: Spanned::new(0..text.len(), DeValue::Table(table)),
        }
    }
}

/// Finds the line of `key` inside `[section]` (or at top level when
/// `section` is empty) for errors found after parsing.
pub fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = line
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_string();
            continue;
        }
        if current == section && key_on_line(line).as_deref() == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

/// Finds the line of a `[section]` header.
pub fn find_section_line(text: &str, section: &str) -> Option<usize> {
    text.lines().enumerate().find_map(|(i, raw)| {
        let line = raw.trim();
        let name = line.strip_prefix('[')?.strip_suffix(']')?.trim();
        (name == section).then_some(i + 1)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: Option<u32>,
        bot_token: Option<u32>,
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = "a = 1\n\nbot_tokn = \"x\"\n";
        let err = parse::<T>(Path::new("/etc/x.toml"), text).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("bot_tokn"));
        assert!(err.message.contains("unknown field"), "{err}");
        assert!(
            err.to_string().starts_with("/etc/x.toml:3: key `bot_tokn`"),
            "{err}"
        );
    }

    #[test]
    fn secret_value_is_never_quoted() {
        let text = "bot_token = \"123:sekrit\"\n";
        let err = parse::<T>(Path::new("/etc/x.toml"), text).unwrap_err();
        assert!(!err.to_string().contains("sekrit"), "{err}");
        assert_eq!(err.key.as_deref(), Some("bot_token"));
    }

    #[test]
    fn secret_keys_below_a_table_and_dotted_keys() {
        assert!(is_secret_key("webhook.headers.Authorization"));
        assert!(is_secret_key("webhook.url"));
        assert!(is_secret_key("sms.auth_token"));
        assert!(!is_secret_key("signal.url"));
        assert!(!is_secret_key("code.digits"));
    }

    #[test]
    fn missing_field_names_the_section() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Outer {
            inner: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            path: String,
        }
        let err = parse::<Outer>(Path::new("/x"), "# c\n[inner]\nother = 1\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some("inner"));
        assert!(err.message.contains("missing field `path`"), "{err}");
    }

    toml_struct! {
        #[derive(Debug, PartialEq)]
        struct Keyed {
            name: String,
            port: Option<u32>,
            list: Option<Vec<String>>,
        }
    }

    /// `Keyed`'s twin, read by serde's derive.
    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Derived {
        name: String,
        port: Option<u32>,
        list: Option<Vec<String>>,
    }

    toml_struct! {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct One {
            only: Option<u32>,
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct DerivedOne {
        only: Option<u32>,
    }

    /// Reads `[s]` of `text` as `read` does, and as serde reads `T`.
    fn both<K: fmt::Debug, D: serde::de::DeserializeOwned + fmt::Debug>(
        text: &str,
        read: fn(TomlItem<'_>) -> Result<K, ParseError>,
    ) -> (String, String) {
        let file = Path::new("/x");
        let mut ours = Err(ParseError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: "no [s]".to_string(),
        });
        for entry in parse_entries(file, text).expect("syntax") {
            if entry.key() == "s" {
                ours = read(entry.value);
            }
        }
        #[derive(serde::Deserialize)]
        struct Outer<D> {
            s: D,
        }
        let serde = parse::<Outer<D>>(file, text).map(|o| o.s);
        (
            format!("{:?}", ours.map(|v| format!("{v:?}"))),
            format!("{:?}", serde.map(|v| format!("{v:?}"))),
        )
    }

    #[test]
    fn toml_struct_reads_and_fails_as_serde_derive() {
        for text in [
            "[s]\nname = \"a\"\n",
            "[s]\nname = \"a\"\nport = 80\nlist = [\"x\"]\n",
            "# c\n[s]\nport = 80\n",
            "[s]\nname = \"a\"\nprot = 80\n",
            "[s]\nname = 1\n",
            "[s]\nname = \"a\"\nport = -1\n",
            "[s]\nname = \"a\"\nlist = [1]\n",
            "s = \"a\"\n",
            "s = 1979-05-27\n",
            "s = []\n",
            "s = [\"a\", 1]\n",
            "s = [\"a\", 1, [\"b\"]]\n",
            "s = {}\n",
            "[[s]]\nname = \"a\"\n",
        ] {
            let (ours, serde) = both::<Keyed, Derived>(text, Keyed::read);
            assert_eq!(
                ours.replace("Keyed", "Derived"),
                serde.replace("Keyed", "Derived"),
                "{text}"
            );
        }
        for text in ["s = []\n", "s = [1]\n", "[s]\nonly = 1\nother = 2\n"] {
            let (ours, serde) = both::<One, DerivedOne>(text, One::read);
            assert_eq!(ours.replace("One", "DerivedOne"), serde, "{text}");
        }
    }

    /// Asserts that `T`'s [`TomlField::read`] gives what its serde
    /// `Deserialize` gives, value and error, for `s = VALUE` with each of
    /// `values`.
    pub(crate) fn reads_as_serde<T>(values: &[&str])
    where
        T: TomlField + serde::de::DeserializeOwned + fmt::Debug + PartialEq,
    {
        let file = Path::new("/x");
        for value in values {
            let text = format!("# c\ns = {value}\n");
            let read = |serde: bool| {
                let entry = parse_entries(file, &text)
                    .expect("syntax")
                    .pop()
                    .expect("s");
                if serde {
                    entry.value.deserialize::<T>()
                } else {
                    T::read(entry.value)
                }
            };
            assert_eq!(read(false), read(true), "{value}");
        }
    }

    /// Every shape a value can have, for [`reads_as_serde`].
    pub(crate) const VALUES: &[&str] = &[
        "\"x\"",
        "\"\"",
        "1",
        "-1",
        "1.5",
        "true",
        "[]",
        "[\"a\"]",
        "{}",
        "{ x = 1 }",
        "{ x = {} }",
        "1979-05-27",
    ];

    #[derive(serde::Deserialize, Debug, Clone, Copy, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Plain,
        Fancy,
    }

    toml_enum!(Mode { "plain" => Plain, "fancy" => Fancy });

    #[test]
    fn toml_enum_reads_and_fails_as_serde_derive() {
        reads_as_serde::<Mode>(VALUES);
        reads_as_serde::<Mode>(&[
            "\"plain\"",
            "\"fancy\"",
            "\"Plain\"",
            "{ plain = {} }",
            "{ fancy = 1 }",
            "{ plain = {}, fancy = {} }",
        ]);
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse::<T>(Path::new("/x"), "a = 1\nb = \n").unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn finds_lines() {
        let text = "top = 1\n[telegram]\n# c\nbot_token = \"x\"\n[code]\ndigits = 6\n";
        assert_eq!(find_key_line(text, "telegram", "bot_token"), Some(4));
        assert_eq!(find_key_line(text, "code", "digits"), Some(6));
        assert_eq!(find_key_line(text, "", "top"), Some(1));
        assert_eq!(find_section_line(text, "code"), Some(5));
        assert_eq!(find_key_line(text, "code", "bot_token"), None);
    }
}
