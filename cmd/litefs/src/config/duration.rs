//! Go's `time.ParseDuration`, which LiteFS uses for every duration in
//! `litefs.yml`, ported exactly (same grammar, same limits).

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// Nanoseconds per unit, as in Go's `time.unitMap`.
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // U+00B5 MICRO SIGN
    ("\u{3bc}s", 1_000), // U+03BC GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's largest duration (`1<<63 - 1` nanoseconds, about 292 years).
const MAX_NANOS: u64 = (1 << 63) - 1;

/// Parses a duration in Go's syntax: an optional sign, then one or more
/// decimal numbers (with an optional fraction) each followed by a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `10s`, `1h30m`, `1.5s`,
/// `500ms`; a bare `0` is zero.
///
/// Differences from Go, all errors rather than other values: a negative
/// duration other than zero is rejected (`std::time::Duration` is unsigned
/// and no LiteFS setting means anything when negative). Like Go, no
/// whitespace is allowed anywhere and the result is limited to about 292
/// years.
///
/// The error is one line naming the value, e.g.
/// `invalid duration "10": missing unit (e.g. "10s")`.
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {s:?}");
    let mut rest = s;
    let mut neg = false;
    if let Some(c) = rest.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            rest = &rest[1..];
        }
    }
    // Special case: if all that is left is "0", this is zero.
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        // The next character must be [0-9.].
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Consume [0-9]*.
        let (int_part, after_int) = leading_int(rest).ok_or_else(invalid)?;
        let pre = after_int.len() != rest.len();
        rest = after_int;
        // Consume (\.[0-9]*)?.
        let mut frac: (u64, f64) = (0, 1.0);
        let mut post = false;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let (f, scale, after_frac) = leading_fraction(after_dot);
            post = after_frac.len() != after_dot.len();
            frac = (f, scale);
            rest = after_frac;
        }
        if !pre && !post {
            // No digits, e.g. ".s".
            return Err(invalid());
        }
        // Consume the unit: everything up to the next number.
        let unit_len = rest
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            let example = if neg { &s[1..] } else { s };
            return Err(format!(
                "invalid duration {s:?}: missing unit (e.g. \"{example}s\")"
            ));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(&(_, nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)"
            ));
        };
        if int_part > (1 << 63) / nanos {
            return Err(invalid()); // overflow
        }
        let mut v = int_part * nanos;
        let (f, scale) = frac;
        if f > 0 {
            // As Go: float64 is exact enough for fractions of the largest unit.
            v += (f as f64 * (nanos as f64 / scale)) as u64;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if neg && total != 0 {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    if total > MAX_NANOS {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

/// Go's `leadingInt`: the leading decimal digits of `s` and the rest, or
/// `None` on overflow past `1<<63`.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut x: u64 = 0;
    for c in s[..n].bytes() {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[n..]))
}

/// Go's `leadingFraction`: the digits after a decimal point as an integer and
/// its scale (a power of ten); digits past what fits are consumed and
/// ignored.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for c in s[..n].bytes() {
        if overflow {
            continue;
        }
        if x > MAX_NANOS / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > 1 << 63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[n..])
}

/// A duration field as it appears in YAML: a Go duration string, or the
/// integer `0` (which Go's YAML decoder rejects; accepted here because
/// `timeout: 0` can only mean zero). Any other number is an error asking for
/// a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoDuration(pub(crate) Duration);

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Duration {
        d.0
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GoDurationVisitor)
    }
}

/// Visits a duration scalar: a string, or a number (only `0` is accepted).
struct GoDurationVisitor;

impl Visitor<'_> for GoDurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 10s, 500ms or 1h30m")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
        parse_go_duration(v).map(GoDuration).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
        if v == 0 {
            return Ok(GoDuration(Duration::ZERO));
        }
        Err(E::custom(format!(
            "invalid duration {v}: missing unit (e.g. \"{v}s\")"
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: must not be negative"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: missing unit (e.g. \"{v}s\")"
        )))
    }
}
