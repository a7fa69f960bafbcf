//! PocketBase's datetime macros in filters and rules, from the request's
//! `@now` (UTC, `YYYY-MM-DD HH:MM:SS.mmmZ`): `@yesterday` and `@tomorrow`
//! (a day either side of now), `@monthStart`, `@monthEnd`, `@yearStart`,
//! `@yearEnd` (dates), and `@second`, `@minute`, `@hour`, `@weekday`
//! (0 = Sunday), `@day`, `@month`, `@year` (numbers). `@now`,
//! `@todayStart` and `@todayEnd` are the compile context's own.

use rusqlite::types::Value as SqlValue;

/// The macros this module answers.
pub const NAMES: &[&str] = &[
    "@yesterday",
    "@tomorrow",
    "@monthStart",
    "@monthEnd",
    "@yearStart",
    "@yearEnd",
    "@second",
    "@minute",
    "@hour",
    "@weekday",
    "@day",
    "@month",
    "@year",
];

/// The fields of a PocketBase date string.
struct Civil {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    ms: i64,
}

fn parse(now: &str) -> Option<Civil> {
    let n = |r: std::ops::Range<usize>| now.get(r)?.parse::<i64>().ok();
    Some(Civil {
        y: n(0..4)?,
        mo: n(5..7)?,
        d: n(8..10)?,
        h: n(11..13)?,
        mi: n(14..16)?,
        s: n(17..19)?,
        ms: n(20..23)?,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The value of macro `name` at `now`; `None` if it is none of
/// [`NAMES`] or `now` is not a date string.
pub fn value(name: &str, now: &str) -> Option<SqlValue> {
    let c = parse(now)?;
    let date = |y: i64, mo: i64, d: i64, end: bool| {
        SqlValue::Text(if end {
            format!("{y:04}-{mo:02}-{d:02} 23:59:59.999Z")
        } else {
            format!("{y:04}-{mo:02}-{d:02} 00:00:00.000Z")
        })
    };
    let shifted = |days: i64| {
        let secs = (days_from_civil(c.y, c.mo, c.d) + days) * 86_400 + c.h * 3600 + c.mi * 60 + c.s;
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis((secs * 1000 + c.ms).max(0) as u64);
        SqlValue::Text(crate::serve::schema::format_time(t))
    };
    Some(match name {
        "@yesterday" => shifted(-1),
        "@tomorrow" => shifted(1),
        "@monthStart" => date(c.y, c.mo, 1, false),
        "@monthEnd" => date(c.y, c.mo, days_in_month(c.y, c.mo), true),
        "@yearStart" => date(c.y, 1, 1, false),
        "@yearEnd" => date(c.y, 12, 31, true),
        "@second" => SqlValue::Integer(c.s),
        "@minute" => SqlValue::Integer(c.mi),
        "@hour" => SqlValue::Integer(c.h),
        "@weekday" => SqlValue::Integer((days_from_civil(c.y, c.mo, c.d) + 4).rem_euclid(7)),
        "@day" => SqlValue::Integer(c.d),
        "@month" => SqlValue::Integer(c.mo),
        "@year" => SqlValue::Integer(c.y),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<SqlValue>) -> String {
        match v {
            Some(SqlValue::Text(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn macros_at_a_fixed_time() {
        let now = "2024-02-29 23:30:05.250Z";
        assert_eq!(text(value("@yesterday", now)), "2024-02-28 23:30:05.250Z");
        assert_eq!(text(value("@tomorrow", now)), "2024-03-01 23:30:05.250Z");
        assert_eq!(text(value("@monthStart", now)), "2024-02-01 00:00:00.000Z");
        assert_eq!(text(value("@monthEnd", now)), "2024-02-29 23:59:59.999Z");
        assert_eq!(text(value("@yearEnd", now)), "2024-12-31 23:59:59.999Z");
        assert_eq!(text(value("@yearStart", now)), "2024-01-01 00:00:00.000Z");
        // 2024-02-29 was a Thursday.
        assert_eq!(value("@weekday", now), Some(SqlValue::Integer(4)));
        assert_eq!(value("@second", now), Some(SqlValue::Integer(5)));
        assert_eq!(value("@year", now), Some(SqlValue::Integer(2024)));
        assert_eq!(
            value("@monthEnd", "2023-02-10 00:00:00.000Z").map(|v| text(Some(v))),
            Some("2023-02-28 23:59:59.999Z".into())
        );
        assert_eq!(value("@day", "garbage"), None);
        assert_eq!(value("@nope", now), None);
        // 1970-01-01 was a Thursday, 2000-01-02 a Sunday.
        assert_eq!(
            value("@weekday", "2000-01-02 12:00:00.000Z"),
            Some(SqlValue::Integer(0))
        );
    }
}
