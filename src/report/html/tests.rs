use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdc_verifier_core::avro::FieldDiff;
use cdc_verifier_core::digest::OpCounts;
use cdc_verifier_core::verdict::{
    Divergence, Drift, Finding, Kind, LagInfo, Mismatch, RangeRef, Recovery, SchemaInfo, Side,
    Sides, WindowRef,
};
use cdc_verifier_core::{Position, SchemaSeen, Segment, WindowStatus};
use serde_json::{Value, json};

use crate::report::{FORMAT, KeyRow, Repair, SourceInfo, StreamSummary};

use super::format::{Esc, clock, duration, human_bytes, rfc3339, thousands, truncate};
use super::timeline::{tick_step, ticks};
use super::*;

/// 2024-08-14T15:40:00Z.
const T0: i64 = 1_723_650_000_000;
const WINDOW_MS: i64 = 10_000;
const XSS: &str = "<script>alert(1)</script>";

fn pos(tx: u64) -> Position {
    Position { tx, order: 0 }
}

fn seg(status: WindowStatus, first: i64, last: i64) -> Segment {
    Segment {
        status,
        first_window: first,
        last_window: last,
        start_ms: T0 + first * WINDOW_MS,
        end_ms: T0 + (last + 1) * WINDOW_MS,
        first_position: pos(1000 + first as u64 * 100),
        last_position: pos(1000 + last as u64 * 100 + 99),
        windows: (last - first + 1) as u64,
    }
}

fn seen(stream: &str, table: &str, id: u32, version: u32) -> SchemaSeen {
    SchemaSeen {
        stream: stream.into(),
        table: table.into(),
        schema_id: id,
        subject: format!("shop.public.{table}-value"),
        version: Some(version),
    }
}

fn window(id: i64) -> WindowRef {
    WindowRef {
        id,
        first: pos(1000 + id as u64 * 100),
        last: pos(1000 + id as u64 * 100 + 99),
        start_ms: T0 + id * WINDOW_MS,
        end_ms: T0 + (id + 1) * WINDOW_MS,
    }
}

fn divergence(replica: &str, finding: Finding) -> Divergence {
    Divergence::new(replica, T0 + 600_000, finding)
}

fn range3() -> RangeRef {
    RangeRef {
        index: 3,
        label: "[0x3000..0x4000)".into(),
    }
}

fn mismatch(table: &str, w: i64, primary: Side, replica: Side) -> Finding {
    Finding::DataMismatch(Mismatch {
        table: table.into(),
        range: range3(),
        window: Some(window(w)),
        sides: Some(Sides { primary, replica }),
        offsets: Vec::new(),
        keys: Vec::new(),
    })
}

fn stream(name: &str, role: &str, events: u64) -> StreamSummary {
    StreamSummary {
        name: name.into(),
        role: role.into(),
        events,
        bytes: events * 212,
        duplicates: 3,
        ..Default::default()
    }
}

fn consistent_table(replica: &str, table: &str, windows: i64) -> TableReport {
    TableReport {
        table: table.into(),
        consistent: true,
        first_divergence: None,
        timeline: vec![seg(WindowStatus::Consistent, 0, windows - 1)],
        schemas: vec![seen("primary", table, 7, 1), seen(replica, table, 7, 1)],
        differing_keys: Vec::new(),
    }
}

fn key_row(id: u64) -> KeyRow {
    KeyRow {
        key: json!({ "id": id }),
        window: 14,
        range: Some("[0x3000..0x4000)".into()),
        primary_position: Some(2_412 + id),
        primary_row: json!({ "id": id, "customer": "ada", "total": "129.90", "status": "paid", "discount": "5.00" }),
        replica_position: Some(2_415 + id),
        replica_row: json!({ "id": id, "customer": "ada", "total": "124.90", "status": "pending" }),
        repair: Repair {
            mysql: format!("INSERT INTO `orders` (`id`) VALUES ({id}) ON DUPLICATE KEY UPDATE …;"),
            postgresql: format!("INSERT INTO \"orders\" (\"id\") VALUES ({id}) …;"),
        },
    }
}

/// `replica-2` drifted to an older `orders` schema at window 12, then its rows diverged.
fn divergent() -> Report {
    let mut keys: Vec<KeyRow> = (1..=4).map(key_row).collect();
    keys.push(KeyRow {
        key: json!({ "id": XSS }),
        window: 15,
        range: None,
        primary_position: Some(2_600),
        primary_row: json!({ "id": XSS, "customer": "\"quoted\" & <b>bold</b>", "total": "1.00" }),
        replica_position: None,
        replica_row: Value::Null,
        repair: Repair {
            mysql: format!("DELETE FROM `orders` WHERE `id` = '{XSS}';"),
            postgresql: String::new(),
        },
    });
    let orders = TableReport {
        table: "orders".into(),
        consistent: false,
        first_divergence: Some(FirstDivergence {
            kind: Kind::SchemaDrift,
            window: 12,
            position: 2_200,
            time: rfc3339(T0 + 12 * WINDOW_MS + 1_250),
            schema_subject: Some("shop.public.orders-value".into()),
            expected_version: Some(3),
            actual_version: Some(2),
            missing_fields: vec!["discount".into()],
        }),
        timeline: vec![
            seg(WindowStatus::Consistent, 0, 11),
            seg(WindowStatus::Drifted, 12, 13),
            seg(WindowStatus::Mismatched, 14, 21),
            seg(WindowStatus::Lagging, 22, 23),
            seg(WindowStatus::Consistent, 24, 35),
        ],
        schemas: vec![
            seen("primary", "orders", 12, 3),
            seen("replica-2", "orders", 9, 2),
            seen("replica-2", "orders", 12, 3),
        ],
        differing_keys: keys,
    };
    let mismatch = divergence(
        "replica-2",
        mismatch(
            "orders",
            14,
            Side {
                digest: "9f2c4e1a77b03d58".into(),
                ops: OpCounts {
                    create: 40,
                    update: 12,
                    ..Default::default()
                },
            },
            Side {
                digest: "0d41be93c2a6f710".into(),
                ops: OpCounts {
                    create: 40,
                    update: 11,
                    ..Default::default()
                },
            },
        ),
    );
    let schema = SchemaInfo {
        subject: "shop.public.orders-value".into(),
        expected_id: 12,
        expected_version: Some(3),
        actual_id: 9,
        actual_version: Some(2),
        fields: vec![FieldDiff::Missing {
            field: "discount".into(),
            expected: "string".into(),
        }],
        first_position: pos(2_200),
        first_ts_ms: T0 + 121_250,
        events: 17,
    };
    let drift = divergence(
        "replica-2",
        Finding::SchemaDrift(Drift {
            table: "orders".into(),
            window: window(12),
            schema,
            offsets: Vec::new(),
        }),
    );
    let lag = divergence(
        "replica-2",
        Finding::ReplicaLag {
            window: window(22),
            lag: LagInfo {
                primary_position: pos(3_400),
                replica_position: pos(3_100),
                positions_behind: 300,
                ms_behind: 12_400,
            },
        },
    );
    let recovered = divergence(
        "replica-2",
        Finding::Recovered(Recovery::DataMismatch {
            table: "orders".into(),
            range: range3(),
            window: Some(window(24)),
        }),
    );
    Report {
        format: FORMAT,
        generated_at: "2024-08-14T16:00:00Z".into(),
        source: SourceInfo {
            kind: "capture".into(),
            description: "captures/shop-2024-08-14.cap".into(),
            from: Some(rfc3339(T0)),
            to: Some(rfc3339(T0 + 360_000)),
        },
        verdict: "divergent".into(),
        primary: "primary".into(),
        streams: vec![
            stream("primary", "primary", 48_210),
            stream("replica-1", "replica", 48_210),
            stream("replica-2", "replica", 47_950),
        ],
        replicas: vec![
            ReplicaReport {
                name: "replica-1".into(),
                consistent: true,
                counts: BTreeMap::new(),
                tables: vec![
                    consistent_table("replica-1", "orders", 36),
                    consistent_table("replica-1", "customers", 36),
                ],
            },
            ReplicaReport {
                name: "replica-2".into(),
                consistent: false,
                counts: BTreeMap::from([
                    ("DataMismatch".into(), 1),
                    ("SchemaDrift".into(), 1),
                    ("ReplicaLag".into(), 1),
                    ("Recovered".into(), 1),
                ]),
                tables: vec![orders, consistent_table("replica-2", "customers", 36)],
            },
        ],
        divergences: vec![drift, mismatch, lag, recovered],
        column_rules: vec!["orders: updated_at ignored".into()],
        rule_notes: vec![
            "orders: column `status` (string): floats rounded to 2 decimals does not apply".into(),
        ],
    }
}

fn consistent() -> Report {
    Report {
        format: FORMAT,
        generated_at: "2024-08-14T16:00:00Z".into(),
        source: SourceInfo {
            kind: "kafka".into(),
            description: "bootstrap 127.0.0.1:9092, last 6 minutes".into(),
            from: None,
            to: None,
        },
        verdict: "consistent".into(),
        primary: "primary".into(),
        streams: vec![
            stream("primary", "primary", 10_000),
            stream("replica-1", "replica", 10_000),
        ],
        replicas: vec![ReplicaReport {
            name: "replica-1".into(),
            consistent: true,
            counts: BTreeMap::new(),
            tables: vec![
                consistent_table("replica-1", "orders", 36),
                consistent_table("replica-1", "customers", 36),
            ],
        }],
        divergences: Vec::new(),
        column_rules: Vec::new(),
        rule_notes: Vec::new(),
    }
}

/// The text of the page's first `<header>`, the headline.
fn headline(page: &str) -> &str {
    let start = page.find("<header").expect("a header");
    &page[start..start + page[start..].find("</header>").expect("header closed")]
}

#[test]
fn divergent_headline_answers_who_what_since_when_and_how_many() {
    let page = render(&divergent());
    let h = headline(&page);
    assert!(h.contains("hero bad"), "{h}");
    assert!(h.contains("Divergent"));
    assert!(h.contains(">replica-2</span> diverged from"), "{h}");
    assert!(h.contains(">orders</a>"), "{h}");
    assert!(
        h.contains("since position <b class=\"mono\">2200</b> (window 12)"),
        "{h}"
    );
    assert!(h.contains("2024-08-14T15:42:01.250Z"), "{h}");
    assert!(
        h.contains("<code>shop.public.orders-value</code>: primary writes version <b>3</b>"),
        "{h}"
    );
    assert!(
        h.contains("writes version <b class=\"bad-text\">2</b>"),
        "{h}"
    );
    assert!(h.contains("<code class=\"chip\">discount</code>"), "{h}");
    assert!(h.contains("<b class=\"bad-text\">5</b> rows differ"), "{h}");
    assert!(page.contains("<title>cdc-verifier report: DIVERGENT: replica-2 · orders</title>"));
}

#[test]
fn consistent_report_is_green_and_says_what_was_checked() {
    let page = render(&consistent());
    let h = headline(&page);
    assert!(h.contains("hero ok") && h.contains("Consistent"), "{h}");
    assert!(
        h.contains(">replica-1</span> matches <span class=\"name\">primary</span>"),
        "{h}"
    );
    assert!(h.contains("<b>1</b><span>replica</span>"), "{h}");
    assert!(h.contains("2 tables compared over 36 windows"), "{h}");
    assert!(h.contains("<b>20,000</b><span>events</span>"), "{h}");
    assert!(h.contains("<b>2</b><span>streams</span>"), "{h}");
    assert!(!page.contains("hero bad") && !page.contains("class=\"mark\""));
    assert!(page.contains("<title>cdc-verifier report: consistent</title>"));
}

#[test]
fn timeline_colours_windows_by_status_and_marks_the_first_divergence() {
    let page = render(&divergent());
    for status in ["consistent", "lagging", "mismatched", "drifted"] {
        assert!(
            page.contains(&format!("<i class=\"seg s-{status}\"")),
            "{status}"
        );
        assert!(
            page.contains(&format!("<i class=\"sw s-{status}\"></i>{status}")),
            "legend {status}"
        );
    }
    // 36 windows from T0: the drift starts at window 12, a third of the way along.
    assert!(
        page.contains("<i class=\"seg s-drifted\" style=\"left:33.333%;width:5.556%\""),
        "{page}"
    );
    assert!(page.contains("<i class=\"mark\" style=\"left:33.333%\""));
    assert!(page.contains("first divergence: window 12, position 2200"));
    for label in ["15:40:00", "15:41:00", "15:45:00", "15:46:00"] {
        assert!(
            page.contains(&format!(">{label}</span>")),
            "axis label {label}"
        );
    }
    assert!(page.contains("2024-08-14T15:40:00.000Z &rarr; 2024-08-14T15:46:00.000Z (6 min 0 s)"));
}

#[test]
fn differing_columns_are_highlighted_side_by_side() {
    let page = render(&divergent());
    assert!(
        page.contains(
            "<tr class=\"d\"><td class=\"mono\">total</td><td class=\"v\">&quot;129.90&quot;</td><td class=\"v\">&quot;124.90&quot;</td></tr>"
        ),
        "{page}"
    );
    assert!(page.contains(
        "<tr class=\"d\"><td class=\"mono\">discount</td><td class=\"v\">&quot;5.00&quot;</td><td class=\"v none\">(no such column)</td></tr>"
    ));
    assert!(
        page.contains("2 equal columns: <span class=\"mono\">customer=&quot;ada&quot;</span> &middot; <span class=\"mono\">id=1</span>"),
        "{page}"
    );
    assert!(
        page.contains("@ 2413") && page.contains("@ 2416"),
        "positions"
    );
    assert!(
        page.contains("<span class=\"pill k-absent\">absent</span>"),
        "a row the replica lacks"
    );
    assert!(
        page.contains(
            "primary wrote no such version\"><code>shop.public.orders-value</code> <b>v2</b>"
        ),
        "the replica's older schema"
    );
}

#[test]
fn every_string_from_the_data_is_escaped() {
    let mut report = divergent();
    report.primary = format!("p{XSS}");
    report.replicas[1].name = format!("replica-2\"><img onerror=x>{XSS}");
    report.replicas[1].tables[0].table = format!("orders'{XSS}");
    report.source.description = XSS.into();
    report.divergences[1].replica = XSS.into();
    let page = render(&report);
    assert!(!page.contains("<script"), "a script element got through");
    assert!(!page.contains("<img"), "an element got through");
    assert!(
        page.contains("replica-2&quot;&gt;&lt;img onerror=x&gt;"),
        "an attribute could be closed from the data"
    );
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("\\&quot;quoted\\&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"));
    assert!(page.contains("orders&#39;&lt;script&gt;"));
    assert_eq!(
        Esc("a&b<c>d\"e'f").to_string(),
        "a&amp;b&lt;c&gt;d&quot;e&#39;f"
    );
}

#[test]
fn repair_statements_are_there_to_copy_in_both_dialects() {
    let page = render(&divergent());
    assert!(
        page.contains("Repair statements, MySQL / MariaDB (5 keys"),
        "{page}"
    );
    assert!(page.contains("Repair statements, PostgreSQL (5 keys"));
    assert!(page.contains("SET time_zone = &#39;+00:00&#39;;"));
    assert!(page.contains("INSERT INTO `orders` (`id`) VALUES (3) ON DUPLICATE KEY UPDATE"));
    assert!(page.contains("DELETE FROM `orders` WHERE `id` = &#39;&lt;script&gt;"));
}

#[test]
fn the_page_is_self_contained() {
    for page in [render(&divergent()), render(&consistent())] {
        let lower = page.to_ascii_lowercase();
        for needle in [
            "http:", "https:", "src=", "<link", "<script", "@import", "url(", "//",
        ] {
            assert!(
                !lower.contains(needle),
                "the page refers to something outside it: {needle}"
            );
        }
        assert!(lower.starts_with("<!doctype html>") && lower.trim_end().ends_with("</html>"));
    }
}

#[test]
fn differing_keys_are_capped_per_table() {
    let mut report = divergent();
    report.replicas[1].tables[0].differing_keys = (0..250).map(key_row).collect();
    let page = render(&report);
    assert_eq!(
        page.matches("<tr class=\"kh\">").count(),
        MAX_KEYS_PER_TABLE
    );
    assert!(page.contains("and 50 more differing keys not shown"));
    assert!(headline(&page).contains("<b class=\"bad-text\">250</b> rows differ"));
}

#[test]
fn verdicts_and_streams_are_listed() {
    let page = render(&divergent());
    assert!(page.contains("<h2>Verdicts (4)</h2>"));
    assert!(page.contains("<span class=\"pill k-drift\">SchemaDrift</span>"));
    assert!(page.contains("DataMismatch replica-2 orders [0x3000..0x4000) window 14 (positions 2400..2499): primary 9f2c4e1a (52 events)"));
    assert!(
        page.contains("<span class=\"pill k-ok\">Recovered</span> <small>DataMismatch</small>")
    );
    assert!(
        page.contains("<td><b>replica-2</b></td><td>replica</td><td>47,950</td>"),
        "{page}"
    );
}

#[test]
fn a_divergent_report_without_a_diverged_table_leads_with_its_first_finding() {
    let mut report = consistent();
    report.verdict = "divergent".into();
    let silent = divergence(
        "replica-1",
        Finding::StreamSilent {
            table: "orders".into(),
            window: None,
            lag: LagInfo {
                primary_position: pos(10),
                replica_position: pos(5),
                positions_behind: 5,
                ms_behind: 90_000,
            },
        },
    );
    report.divergences.push(silent);
    let h = render(&report);
    let h = headline(&h);
    assert!(
        h.contains("hero bad")
            && h.contains("StreamSilent</span> on <span class=\"name\">replica-1</span>"),
        "{h}"
    );
    assert!(h.contains("no records for 90000 ms"), "{h}");
}

#[test]
fn a_hand_written_short_digest_does_not_panic() {
    let mut report = consistent();
    let d = divergence(
        "replica-1",
        mismatch(
            "orders",
            1,
            Side {
                digest: "ab".into(),
                ops: OpCounts::default(),
            },
            Side {
                digest: "0d41be93c2a6f710".into(),
                ops: OpCounts::default(),
            },
        ),
    );
    report.divergences.push(d);
    assert!(render(&report).contains("DataMismatch/replica-1/orders/3/1"));
}

#[test]
fn times_and_numbers_are_formatted() {
    assert_eq!(rfc3339(T0 + 1_250), "2024-08-14T15:40:01.250Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(clock(T0 + 61_000, false), "15:41:01");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(999), "999");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(duration(3_723_000), "1 h 2 min");
    assert_eq!(truncate("héllo", 2), ("hé", true));
    assert_eq!(tick_step(360_000), 60_000);
    assert_eq!(tick_step(3_000), 500);
    assert_eq!(
        ticks(T0 + 1, T0 + 180_000, 60_000).collect::<Vec<_>>(),
        [T0 + 60_000, T0 + 120_000, T0 + 180_000]
    );
}

#[test]
fn cli_renders_a_json_report_file() {
    let dir = Scratch::new("cli");
    let (input, output) = (
        dir.path().join("report.json"),
        dir.path().join("report.html"),
    );
    std::fs::write(&input, serde_json::to_string_pretty(&divergent()).unwrap()).unwrap();
    cli(&input, &output).unwrap();
    let page = std::fs::read_to_string(&output).unwrap();
    assert_eq!(
        page,
        render(&divergent()),
        "the JSON round trip changes nothing on the page"
    );
    let err = cli(&dir.path().join("missing.json"), &output).unwrap_err();
    assert!(format!("{err:#}").starts_with("reading report"), "{err:#}");
}

/// A fresh directory under the system's temporary directory, removed on drop unless
/// `CDC_VERIFIER_KEEP_REPORT_PAGE` is set (to look at what the test rendered).
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cdc-verifier-report-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("CDC_VERIFIER_KEEP_REPORT_PAGE").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `args` with a fresh profile; returns its stdout.
fn chromium(scratch: &Path, profile: &str, args: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the HTML report is checked in a real browser. Install it with \
         `scripts/install-test-deps` (or `apt-get install -y chromium`)"
    );
    let profile = scratch.join(profile);
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    // Read stdout on a thread so a large DOM cannot fill the pipe while we wait.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 120 s: {}",
                err_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = err_reader.join().unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    reader.join().unwrap().expect("reading chromium's output")
}

#[test]
fn renders_in_headless_chromium() {
    let scratch = Scratch::new("chromium");
    let page = scratch.path().join("report.html");
    std::fs::write(&page, render(&divergent())).unwrap();
    let url = format!("file://{}", page.display());

    let dom = chromium(
        scratch.path(),
        "profile-dom",
        &["--dump-dom".to_string(), url.clone()],
    );
    assert!(
        dom.contains("<header class=\"hero bad\">"),
        "the page did not render: {dom:.2000}"
    );
    assert!(
        dom.contains("replica-2</span> diverged from"),
        "the headline names the replica: {dom:.2000}"
    );
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the key is text"
    );
    assert!(
        !dom.contains("<script"),
        "no script element in the rendered DOM"
    );
    assert!(
        dom.contains("class=\"seg s-mismatched\""),
        "the timeline rendered"
    );

    let png = scratch.path().join("report.png");
    chromium(
        scratch.path(),
        "profile-screenshot",
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1000".to_string(),
            url,
        ],
    );
    let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    let (width, height) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((width, height), (1400, 1000), "screenshot size");
    // A blank 1400×1000 page compresses to a few kilobytes; the report is far busier.
    assert!(
        bytes.len() > 40_000,
        "the screenshot looks empty ({} bytes)",
        bytes.len()
    );
}

#[test]
fn the_column_rules_compared_under_are_listed_with_what_they_could_not_do() {
    let page = render(&divergent());
    assert!(page.contains("Compared under column rules"));
    assert!(page.contains("<span class=\"mono\">orders: updated_at ignored</span>"));
    assert!(page.contains(
        "not applied: orders: column `status` (string): floats rounded to 2 decimals does not apply"
    ));
    assert!(!render(&consistent()).contains("column rules"));
}
