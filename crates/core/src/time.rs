//! UTC timestamps without a date library: parsing RFC 3339 and printing `YYYY-MM-DDTHH:MM:SS.fffZ`.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Milliseconds since the epoch of a UTC time.
pub fn utc_ms(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    days_from_civil(y, mo, d) * 86_400_000 + (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1000
}

/// Parses RFC 3339 times such as `2024-08-14T15:44:00Z`, `2024-08-14T15:44:00.250Z` or
/// `2024-08-14T17:44:00+02:00`.
pub fn parse_utc(text: &str) -> Option<i64> {
    let (t, offset_min) = match text.strip_suffix('Z') {
        Some(t) => (t, 0),
        None => {
            let i = text.len().checked_sub(6)?;
            let (t, o) = text.split_at(i);
            let sign = match o.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = o[1..].split_once(':')?;
            (
                t,
                sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?),
            )
        }
    };
    let (date, time) = t.split_once(['T', ' '])?;
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut tp = hms.splitn(3, ':');
    let h: u32 = tp.next()?.parse().ok()?;
    let mi: u32 = tp.next()?.parse().ok()?;
    let s: u32 = tp.next()?.parse().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded[..3].parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    Some(utc_ms(y, mo, d, h, mi, s) + ms - offset_min * 60_000)
}

/// Formats milliseconds since the epoch as `2024-08-14T15:44:00.000Z`.
pub fn format_utc(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, f) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse_utc("2024-08-14T15:45:00Z").unwrap();
        assert_eq!(ms, 1_723_650_300_000);
        assert_eq!(format_utc(ms), "2024-08-14T15:45:00.000Z");
        assert_eq!(parse_utc("2024-08-14T15:45:00.25Z"), Some(ms + 250));
        assert_eq!(parse_utc("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(parse_utc("2024-08-14T17:45:00+02:00"), Some(ms));
        assert_eq!(parse_utc("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("yesterday"), None);
        for days in [-1000, 0, 19_949, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
