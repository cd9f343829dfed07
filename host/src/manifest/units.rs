//! Human units in manifests: byte sizes (`128m`, `1MiB`), durations (`10s`, `500ms`) and
//! CPU counts (`0.5`). Each accepts a bare number too, so YAML's own typing never bites.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A size in bytes. Suffixes follow Docker: `b`, `k`/`kb`/`kib`, `m`/`mb`/`mib`,
/// `g`/`gb`/`gib`, `t`..., case-insensitive, all powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A non-negative duration: a number with `ms`, `s`, `m` or `h`; a bare number is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// A fraction of CPUs, as Docker's `--cpus`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Cpus(pub f64);

/// A value that is not what its field takes: a size, a duration, a CPU count or a user;
/// the message names the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);

/// Bytes in a kibibyte.
pub const KIB: u64 = 1024;
/// Bytes in a mebibyte.
pub const MIB: u64 = 1024 * KIB;
/// Bytes in a gibibyte.
pub const GIB: u64 = 1024 * MIB;

/// `" 1.5 GiB "` is `("1.5 GiB", 1.5, " GiB")`; the trimmed text is the error when
/// no number leads.
fn split_number(text: &str) -> Result<(&str, f64, &str), &str> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number.parse().map_err(|_| text)?;
    Ok((text, number, unit))
}

impl ByteSize {
    /// Parse `128m`, `1MiB`, `64k` or a bare number of bytes.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let (text, number, unit) = split_number(text).map_err(|text| {
            InvalidValue(format!("{text:?} is not a size: expected a number with an optional unit, like 128m or 1MiB"))
        })?;
        let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => KIB,
            "m" | "mb" | "mib" => MIB,
            "g" | "gb" | "gib" => GIB,
            "t" | "tb" | "tib" => 1024 * GIB,
            other => {
                return Err(InvalidValue(format!(
                    "{text:?} has an unknown size unit {other:?}: use b, k, m, g or t (optionally with b or ib)"
                )))
            }
        };
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(InvalidValue(format!("{text:?} is too large")));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if b >= size && b.is_multiple_of(size) {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

impl HumanDuration {
    /// Parse `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let (text, number, unit) = split_number(text).map_err(|text| {
            InvalidValue(format!(
                "{text:?} is not a duration: expected a number with a unit, like 10s or 500ms"
            ))
        })?;
        let seconds = match unit.trim() {
            "" | "s" => number,
            "ms" => number / 1000.0,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            other => {
                return Err(InvalidValue(format!(
                    "{text:?} has an unknown time unit {other:?}: use ms, s, m or h"
                )))
            }
        };
        Duration::try_from_secs_f64(seconds)
            .map(HumanDuration)
            .map_err(|_| InvalidValue(format!("{text:?} is out of range")))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Cpus {
    /// Parse a CPU count such as `0.5` or `2`.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite())
            .map(Cpus)
            .ok_or_else(|| {
                InvalidValue(format!(
                    "{text:?} is not a CPU count: expected a number like 0.5 or 2"
                ))
            })
    }

    /// Docker's `NanoCpus`.
    pub fn nano(self) -> i64 {
        (self.0 * 1e9).round() as i64
    }
}

/// One visitor for all three: numbers and strings both reach `parse`.
struct UnitVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, InvalidValue>,
}

impl<T> Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        if v < 0 {
            return Err(E::custom(format!("{v} is negative")));
        }
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if v < 0.0 {
            return Err(E::custom(format!("{v} is negative")));
        }
        self.visit_str(&v.to_string())
    }
}

macro_rules! serde_via_parse {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(UnitVisitor {
                    expecting: $expecting,
                    parse: <$ty>::parse,
                })
            }
        }
    };
}

serde_via_parse!(ByteSize, "a size like 128m or 1MiB");
serde_via_parse!(HumanDuration, "a duration like 10s or 500ms");
serde_via_parse!(Cpus, "a CPU count like 0.5");

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

/// A value written as a number or as a string of a number and a unit.
fn number_with_unit(description: &str, pattern: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": pattern}
        ]
    })
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        number_with_unit(
            "A size: bytes, or a number with a unit b, k, m, g or t (optionally with b or ib, any case), like 128m or 1MiB.",
            "^\\s*[0-9.]+\\s*([bB]|[kKmMgGtT]([iI]?[bB])?)?\\s*$",
        )
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        number_with_unit(
            "A duration: seconds, or a number with a unit ms, s, m or h, like 10s or 500ms.",
            "^\\s*[0-9.]+\\s*(ms|s|m|h)?\\s*$",
        )
    }
}

impl schemars::JsonSchema for Cpus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cpus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        number_with_unit(
            "CPUs, as Docker's --cpus: a number above 0, like 0.5 or 2.",
            "^\\s*[0-9.]+\\s*$",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_follow_docker() {
        for (text, bytes) in [
            ("128m", 128 * MIB),
            ("1MiB", MIB),
            ("1mb", MIB),
            ("6M", 6 * MIB),
            ("512", 512),
            ("1.5g", 3 * GIB / 2),
            ("64 k", 64 * KIB),
        ] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in ["", "m", "12q", "-1m", "1e400", "abc"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_need_known_units() {
        assert_eq!(
            HumanDuration::parse("10s").unwrap().0,
            Duration::from_secs(10)
        );
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("1.5s").unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!(
            HumanDuration::parse("2m").unwrap().0,
            Duration::from_secs(120)
        );
        assert_eq!(HumanDuration::parse("3").unwrap().0, Duration::from_secs(3));
        for bad in ["10 days", "s", "1d", "-5s"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["128MiB", "1GiB", "100B", "3KiB"] {
            assert_eq!(ByteSize::parse(text).unwrap().to_string(), text);
        }
        for text in ["10s", "250ms"] {
            assert_eq!(HumanDuration::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn cpus_convert_to_nanocpus() {
        assert_eq!(Cpus::parse("0.5").unwrap().nano(), 500_000_000);
        assert!(Cpus::parse("half").is_err());
    }
}
