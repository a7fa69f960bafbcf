//! A date field's value as PocketBase stores it: any of the common forms a
//! client sends (`2024-06-01`, `2024-06-01 10:00:00`, JavaScript's
//! `2024-06-01T10:00:00.000Z`, an offset such as `+02:00`) becomes UTC
//! `YYYY-MM-DD HH:MM:SS.mmmZ`, so that dates compare and sort as text.

use crate::serve::query::macros::{days_from_civil, days_in_month};

/// `s` as PocketBase's UTC date string; `None` if it is no date.
pub fn normalize(s: &str) -> Option<String> {
    let s = s.trim();
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
    };
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let (y, mo, d) = (
        num(date.get(..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut ms, mut offset) = (0, 0, 0, 0i64, 0i64);
    if !rest.is_empty() {
        let rest = rest.strip_prefix([' ', 'T'])?;
        // The zone: Z, ±HH:MM, ±HHMM, or Go's " +0000 UTC".
        let rest = rest.strip_suffix(" UTC").unwrap_or(rest).trim_end();
        let (time, zone) = match rest.find(['Z', '+', '-', ' ']) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        offset = match zone {
            "" | "Z" => 0,
            z => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
                if digits.len() != 4 {
                    return None;
                }
                sign * (num(&digits[..2])? * 60 + num(&digits[2..])?)
            }
        };
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut parts = hms.split(':');
        h = num(parts.next()?)?;
        mi = num(parts.next()?)?;
        sec = parts.next().map_or(Some(0), num)?;
        if parts.next().is_some() || h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        if !frac.is_empty() {
            num(frac)?;
            ms = format!("{frac:0<3}")[..3].parse().ok()?;
        }
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset * 60;
    let millis = secs.checked_mul(1000)?.checked_add(ms)?;
    let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(
        u64::try_from(millis).ok()?,
    ))?;
    Some(crate::serve::schema::format_time(t))
}

/// A stored date as Go prints a `time.Time` (`2024-01-01 00:00:00 +0000
/// UTC`) and as RFC 3339 (`2024-01-01T00:00:00Z`), for PocketBase's messages.
pub fn go_forms(stored: &str) -> (String, String) {
    let (day, time) = stored.split_once(' ').unwrap_or((stored, "00:00:00.000Z"));
    let time = time.trim_end_matches('Z');
    let time = time.strip_suffix(".000").unwrap_or(time);
    let time = if time.contains('.') {
        time.trim_end_matches('0')
    } else {
        time
    };
    (format!("{day} {time} +0000 UTC"), format!("{day}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_forms_clients_send() {
        for (given, want) in [
            ("2024-06-01", "2024-06-01 00:00:00.000Z"),
            ("2024-06-01 10:00:00", "2024-06-01 10:00:00.000Z"),
            ("2024-06-01T10:00:00Z", "2024-06-01 10:00:00.000Z"),
            ("2024-06-01T10:00:00.5Z", "2024-06-01 10:00:00.500Z"),
            ("2024-06-01 10:00:00.123Z", "2024-06-01 10:00:00.123Z"),
            ("2024-06-01T12:30:00+02:00", "2024-06-01 10:30:00.000Z"),
            ("2024-06-01T00:30:00-0100", "2024-06-01 01:30:00.000Z"),
            ("2024-06-01 10:00", "2024-06-01 10:00:00.000Z"),
            ("2024-01-01 00:00:00 +0000 UTC", "2024-01-01 00:00:00.000Z"),
            ("2024-02-29", "2024-02-29 00:00:00.000Z"),
        ] {
            assert_eq!(normalize(given).as_deref(), Some(want), "{given}");
        }
        for bad in [
            "",
            "garbage",
            "2023-02-29",
            "2024-13-01",
            "2024-06-01X10",
            "2024-06-01 25:00",
            "2024/06/01",
            "1969-12-31",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn go_forms_for_messages() {
        assert_eq!(
            go_forms("2024-01-01 00:00:00.000Z"),
            (
                "2024-01-01 00:00:00 +0000 UTC".into(),
                "2024-01-01T00:00:00Z".into()
            )
        );
        assert_eq!(
            go_forms("2024-01-01 00:00:00.500Z").1,
            "2024-01-01T00:00:00.5Z"
        );
    }
}
