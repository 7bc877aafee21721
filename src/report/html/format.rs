//! Escaping and the small formatting of numbers, times, sizes and names the sections share.

use std::fmt::{self, Write as _};

use cdc_verifier_core::time::civil_from_days;
use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{SchemaSeen, WindowStatus};

use crate::report::ReplicaReport;

use super::tables::sides;

/// HTML-escapes text for element content and double- or single-quoted attributes.
pub(super) struct Esc<'a>(pub(super) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, b) in self.0.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

pub(super) fn replica_pill(replica: &ReplicaReport) -> String {
    let mut s = if replica.consistent {
        "<span class=\"pill k-ok\">consistent</span>".to_string()
    } else {
        "<span class=\"pill k-bad\">divergent</span>".to_string()
    };
    for (kind, n) in &replica.counts {
        if *n > 0 {
            w!(
                s,
                " <span class=\"count\">{} {}</span>",
                Esc(kind),
                thousands(*n)
            );
        }
    }
    s
}

pub(super) fn versions_by_side(seen: &[SchemaSeen], primary: &str) -> (String, String) {
    let list = |side: Vec<&SchemaSeen>| {
        side.iter()
            .map(|s| format!("<code>{}</code> v{}", Esc(&s.subject), version(s.version)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (p, r) = sides(seen, primary);
    (list(p), list(r))
}

pub(super) fn status_name(s: WindowStatus) -> &'static str {
    match s {
        WindowStatus::Consistent => "consistent",
        WindowStatus::Lagging => "lagging",
        WindowStatus::Mismatched => "mismatched",
        WindowStatus::Drifted => "drifted",
    }
}

pub(super) fn kind_class(k: Kind) -> &'static str {
    match k {
        Kind::DataMismatch => "mismatch",
        Kind::SchemaDrift => "drift",
        Kind::ReplicaLag | Kind::StreamSilent | Kind::Unverified => "lag",
        Kind::PoisonEvent => "poison",
        Kind::Recovered => "ok",
    }
}

pub(super) fn version(v: Option<u32>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

pub(super) fn plural<'s>(n: u64, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 { one } else { many }
}

pub(super) fn truncate(s: &str, max_chars: usize) -> (&str, bool) {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub(super) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
    } else if ms < 86_400_000 {
        format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60)
    } else {
        format!("{} d {} h", ms / 86_400_000, ms / 3_600_000 % 24)
    }
}

/// `2024-08-14T15:44:00.000Z`.
pub(super) fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{}Z", clock(rem, true))
}

/// `15:44:00`, or `15:44:00.250` with milliseconds.
pub(super) fn clock(ms: i64, millis: bool) -> String {
    let rem = ms.rem_euclid(86_400_000);
    let (h, mi, s, f) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    if millis {
        format!("{h:02}:{mi:02}:{s:02}.{f:03}")
    } else {
        format!("{h:02}:{mi:02}:{s:02}")
    }
}
