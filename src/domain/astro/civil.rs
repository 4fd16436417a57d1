//! Local civil time in an IANA zone → the UTC instant, through chrono-tz's rules (which carry
//! the historical offsets, e.g. Korea's UTC+8:30 and its summer times). A local time the
//! clocks skipped, or one they showed twice, is an error rather than a guess.

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::AstroError;

/// A resolved birth instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub utc: DateTime<Utc>,
    pub local: NaiveDateTime,
    pub zone: Tz,
    /// The zone's offset from UTC at that instant, seconds (summer time included).
    pub utc_offset_seconds: i32,
}

/// Read `YYYY-MM-DDTHH:MM[:SS]` (a space may replace the `T`).
pub fn parse_local(text: &str) -> Result<NaiveDateTime, AstroError> {
    let t = text.trim();
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .ok_or_else(|| AstroError::BadDatetime(text.to_owned()))
}

/// Parse an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz, AstroError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| AstroError::UnknownTimezone(name.to_owned()))
}

/// Resolve a local date-time in a zone to UTC.
pub fn resolve(local: NaiveDateTime, zone: Tz) -> Result<Resolved, AstroError> {
    let dt = match zone.from_local_datetime(&local) {
        LocalResult::Single(dt) => dt,
        LocalResult::None => {
            return Err(AstroError::NonexistentLocalTime {
                local: local.to_string(),
                zone: zone.name().to_owned(),
            });
        }
        LocalResult::Ambiguous(_, _) => {
            return Err(AstroError::AmbiguousLocalTime {
                local: local.to_string(),
                zone: zone.name().to_owned(),
            });
        }
    };
    Ok(Resolved {
        utc: dt.with_timezone(&Utc),
        local,
        zone,
        utc_offset_seconds: dt.offset().fix().local_minus_utc(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seoul_1990_is_utc_plus_9() {
        let r = resolve(
            parse_local("1990-05-15T12:30").unwrap(),
            parse_zone("Asia/Seoul").unwrap(),
        )
        .unwrap();
        assert_eq!(r.utc.to_rfc3339(), "1990-05-15T03:30:00+00:00");
        assert_eq!(r.utc_offset_seconds, 9 * 3600);
    }

    #[test]
    fn korean_summer_time_gap_and_overlap() {
        let seoul = parse_zone("Asia/Seoul").unwrap();
        // 1988-05-08 02:00 → 03:00 (summer time began): 02:30 never happened.
        let gap = resolve(parse_local("1988-05-08T02:30").unwrap(), seoul);
        assert!(
            matches!(gap, Err(AstroError::NonexistentLocalTime { .. })),
            "{gap:?}"
        );
        // 1988-10-09 03:00 → 02:00 (summer time ended): 02:30 happened twice.
        let twice = resolve(parse_local("1988-10-09T02:30").unwrap(), seoul);
        assert!(
            matches!(twice, Err(AstroError::AmbiguousLocalTime { .. })),
            "{twice:?}"
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert!(parse_local("15/05/1990 12:30").is_err());
        assert!(parse_zone("Mars/Olympus").is_err());
    }
}
