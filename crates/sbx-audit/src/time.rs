//! UTC timestamps with microsecond precision, written as RFC 3339 (`2026-11-23T12:14:47.123456Z`).
//!
//! The conversion is done here (Howard Hinnant's civil-calendar algorithms) rather than with a date crate: the
//! writer formats one timestamp per event, and the fixed 27-byte form is both fast and trivially sortable.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time: microseconds since the Unix epoch, UTC. Years 0000 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    micros: i64,
}

/// A timestamp string that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {value:?}: {problem}; expected RFC 3339 such as 2026-11-23T12:14:47.123456Z"
)]
pub struct TimestampError {
    /// The text that was given (cut to 64 characters).
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

const MIN_MICROS: i64 = -62_167_219_200_000_000; // 0000-01-01T00:00:00Z
const MAX_MICROS: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let micros = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(MAX_MICROS),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        };
        Self::from_unix_micros(micros)
    }

    /// From microseconds since the Unix epoch; clamped to years 0000..=9999.
    pub fn from_unix_micros(micros: i64) -> Self {
        Self {
            micros: micros.clamp(MIN_MICROS, MAX_MICROS),
        }
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.micros
    }

    /// Milliseconds since the Unix epoch (used in UUIDv7 ids).
    pub fn unix_millis(self) -> i64 {
        self.micros.div_euclid(1000)
    }

    /// This timestamp moved back by `d` (saturating at year 0000).
    pub fn saturating_sub(self, d: Duration) -> Self {
        let d = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self::from_unix_micros(self.micros.saturating_sub(d))
    }

    /// This timestamp moved forward by `d` (saturating at year 9999).
    pub fn saturating_add(self, d: Duration) -> Self {
        let d = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self::from_unix_micros(self.micros.saturating_add(d))
    }

    /// The RFC 3339 form, always 27 bytes: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn to_rfc3339(self) -> String {
        let buf = self.encode();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The RFC 3339 form in a stack buffer (formatted once per event written, so kept allocation-free).
    pub(crate) fn encode(self) -> [u8; 27] {
        let p = self.parts();
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut out[0..4], p.year);
        put_digits(&mut out[5..7], p.month);
        put_digits(&mut out[8..10], p.day);
        put_digits(&mut out[11..13], p.hour);
        put_digits(&mut out[14..16], p.minute);
        put_digits(&mut out[17..19], p.second);
        put_digits(&mut out[20..26], p.micro);
        out
    }

    /// A compact form for file names that sorts by time: `YYYYMMDDTHHMMSS.ffffffZ`.
    pub(crate) fn to_compact(self) -> String {
        self.to_rfc3339().replace(['-', ':'], "")
    }

    /// Parses the compact file-name form written by [`Timestamp::to_compact`].
    pub(crate) fn parse_compact(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 23 || b[8] != b'T' || b[15] != b'.' || b[22] != b'Z' {
            return None;
        }
        let full = format!(
            "{}-{}-{}T{}:{}:{}",
            s.get(0..4)?,
            s.get(4..6)?,
            s.get(6..8)?,
            s.get(9..11)?,
            s.get(11..13)?,
            s.get(13..)?
        );
        Self::parse(&full).ok()
    }

    fn parts(self) -> Parts {
        let days = self.micros.div_euclid(86_400_000_000);
        let rem = self.micros.rem_euclid(86_400_000_000);
        let (year, month, day) = civil_from_days(days);
        let secs = rem / 1_000_000;
        Parts {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            micro: rem % 1_000_000,
        }
    }

    /// Parses RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`; a fraction finer than microseconds is cut.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let err = |problem| TimestampError {
            value: s.chars().take(64).collect(),
            problem,
        };
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let digits = b.get(range).ok_or_else(|| err("too short"))?;
            digits.iter().try_fold(0i64, |acc, &c| {
                if c.is_ascii_digit() {
                    Ok(acc * 10 + i64::from(c - b'0'))
                } else {
                    Err(err("expected a digit"))
                }
            })
        };
        for (i, want) in [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')] {
            if b[i] != want {
                return Err(err("misplaced separator"));
            }
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(err("expected 'T' between date and time"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err("no such date"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("no such time of day"));
        }
        let mut pos = 19;
        let mut micro = 0i64;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                if pos - start < 6 {
                    micro = micro * 10 + i64::from(b[pos] - b'0');
                }
                pos += 1;
            }
            let n = pos - start;
            if n == 0 || n > 9 {
                return Err(err("fraction must have 1 to 9 digits"));
            }
            for _ in n..6 {
                micro *= 10;
            }
        }
        let offset_secs = match &b[pos..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let h = num(pos + 1..pos + 3)?;
                let m = num(pos + 4..pos + 6)?;
                if h > 23 || m > 59 {
                    return Err(err("offset out of range"));
                }
                let o = h * 3600 + m * 60;
                if *sign == b'-' { -o } else { o }
            }
            _ => return Err(err("expected 'Z' or an offset like +02:00 at the end")),
        };
        let second = second.min(59); // a leap second is read as :59
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Ok(Self::from_unix_micros(secs * 1_000_000 + micro))
    }
}

struct Parts {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micro: i64,
}

/// Writes `value` as decimal digits filling `out` (zero-padded; values are in range by construction).
fn put_digits(out: &mut [u8], value: i64) {
    let mut v = value.unsigned_abs();
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buf = self.encode();
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        let t = Timestamp::parse("2026-11-23T12:14:47.123456Z").unwrap();
        assert_eq!(t.unix_micros(), 1_795_436_087_123_456);
        assert_eq!(t.to_rfc3339(), "2026-11-23T12:14:47.123456Z");
        assert_eq!(
            Timestamp::from_unix_micros(0).to_rfc3339(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::parse("2026-11-23T14:14:47.1+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-23T12:14:47.100000Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn round_trips_across_calendar_edges() {
        for micros in [
            MIN_MICROS,
            MAX_MICROS,
            951_782_400_000_000,   // 2000-02-29
            4_107_542_399_999_999, // 2100-02-28T23:59:59.999999
            -2_208_988_800_000_001,
        ] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(Timestamp::parse(&t.to_rfc3339()).unwrap(), t, "{t}");
            assert_eq!(Timestamp::parse_compact(&t.to_compact()).unwrap(), t);
        }
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01 00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00+2:00",
            "２０２６-01-01T00:00:00Z",
        ] {
            let e = Timestamp::parse(bad).unwrap_err();
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }
}
