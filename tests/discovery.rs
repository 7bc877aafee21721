//! Topics that come and go while `cdc-verifier run` runs, against the real broker: started
//! before any topic exists it waits, not ready, and verifies the topics once they appear; a
//! table whose topics appear while it runs is verified; a deleted topic is reported; records
//! deleted by retention before they were read are counted.

mod live;
mod support;

use std::time::{Duration, Instant};

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

use live::{Alert, Verifier};

/// Polls the alert topic until `want` holds of the alerts; fails after `timeout`.
fn wait_for_alerts(
    v: &mut Verifier,
    timeout: Duration,
    want: impl Fn(&[Alert]) -> bool,
) -> Vec<Alert> {
    let deadline = Instant::now() + timeout;
    loop {
        let a = live::alerts(&v.alerts);
        if want(&a) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "alerts never came: {a:#?}\nlog: {}",
            v.log()
        );
        assert!(v.child.try_wait().unwrap().is_none(), "exited: {}", v.log());
    }
}

#[test]
fn run_without_topics_waits_then_verifies_them_and_reports_a_deleted_one() {
    support::require_services();
    let name = support::unique_name("disc-wait");
    let prefix = format!("{name}-");
    let mut v = Verifier::start(
        &name,
        &[
            "--topic-prefix".into(),
            prefix.clone(),
            "--group-id".into(),
            format!("{name}-group"),
            "--registry-url".into(),
            support::registry_url(),
            "--set".into(),
            "service.discovery-interval-s=1".into(),
        ],
    );
    // No topic yet: running, healthy, not ready, naming every stream it waits for.
    let (_, body) = v.wait_for("/readyz", Duration::from_secs(60), |s, b| {
        s == 503 && b.contains("no_topic")
    });
    for stream in ["primary", "replica-1", "replica-2"] {
        assert!(body.contains(&format!("\"stream\":\"{stream}\"")), "{body}");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(v.child.try_wait().unwrap().is_none(), "{}", v.log());
    assert_eq!(v.get("/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(v.get("/readyz").map(|(s, _)| s), Some(503));
    assert!(v.log().contains("waiting for topics"), "{}", v.log());

    // The incident's traffic: its topics are created, then written.
    let m = live::simulate(&prefix, "incident", 60_000, &[]);
    assert!(
        m["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "schema_drift" && f["replica"] == "replica-2"),
        "{m}"
    );
    v.wait_for("/readyz", Duration::from_secs(60), |s, _| s == 200);
    wait_for_alerts(&mut v, Duration::from_secs(120), |a| {
        a.iter().any(|x| {
            x.kind == "SchemaDrift"
                && x.replica == "replica-2"
                && x.table.as_deref() == Some("orders")
        })
    });

    // A topic deleted: reported, its stream not ready, the service healthy.
    let gone = format!("{prefix}replica-2.shop.payments");
    support::delete_topics(&[&gone]);
    let (_, body) = v.wait_for("/readyz", Duration::from_secs(60), |s, b| {
        s == 503 && b.contains("topic_deleted")
    });
    assert!(body.contains(&gone) && body.contains("replica-2"), "{body}");
    let deleted = format!("cdc_verifier_topic_deleted{{stream=\"replica-2\",topic=\"{gone}\"}} 1");
    v.wait_for("/metrics", Duration::from_secs(10), |_, b| {
        b.contains(&deleted)
    });
    assert_eq!(v.get("/healthz").map(|(s, _)| s), Some(200));
    assert!(v.log().contains("topic deleted"), "{}", v.log());
    let (status, log) = v.stop();
    assert!(status.success(), "{log}");
}

/// One record read from a staging topic.
struct Rec {
    partition: i32,
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Every record of a topic (its partitions read to their high watermarks).
fn read_topic(topic: &str, partitions: i32) -> Vec<Rec> {
    let c = support::consumer(&support::unique_name("copy"), "read_committed");
    let mut tpl = TopicPartitionList::new();
    let mut want = 0;
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        want += support::watermarks(topic, p).1 as usize;
    }
    c.assign(&tpl).unwrap();
    support::poll_n(&c, want, Duration::from_secs(60))
        .iter()
        .map(|m| Rec {
            partition: m.partition(),
            ts: m.timestamp().to_millis().unwrap(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        })
        .collect()
}

/// Writes records to `topic`, partition, key, value and timestamp kept.
fn write(topic: &str, recs: &[&Rec]) {
    let p = support::idempotent_producer();
    for r in recs {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(r.partition)
            .timestamp(r.ts);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        p.send(rec).map_err(|(e, _)| e).unwrap();
        p.poll(Duration::ZERO);
    }
    support::flush(&p);
}

#[test]
fn a_table_whose_topics_appear_while_running_is_verified() {
    support::require_services();
    // Traffic of one primary and one replica, staged, then copied into the verified topics:
    // every table's first half before the verifier starts; `orders` (its topics created
    // only then) and the second half of the others while it runs.
    let stage = format!("{}-", support::unique_name("disc-stage"));
    // (Paced: 8 s of commits, some 8 windows of whole-second commit times.)
    live::simulate(
        &stage,
        "clean",
        8_000,
        &["--replicas", "1", "--no-migration", "--rate", "1000"],
    );
    let name = support::unique_name("disc-new");
    let tables = [
        "customers",
        "products",
        "inventory",
        "carts",
        "cart_items",
        "payments",
        "orders",
    ];
    let streams = ["primary", "replica-1"];
    let staged: Vec<Vec<Vec<Rec>>> = streams
        .iter()
        .map(|s| {
            tables
                .iter()
                .map(|t| read_topic(&format!("{stage}{s}.shop.{t}"), 2))
                .collect()
        })
        .collect();
    let (lo, hi) = staged
        .iter()
        .flatten()
        .flatten()
        .fold((i64::MAX, i64::MIN), |(lo, hi), r| {
            (lo.min(r.ts), hi.max(r.ts))
        });
    let mid = lo + (hi - lo) / 2;
    let topic = |s: &str, t: &str| format!("{name}-{s}.shop.{t}");
    for (si, s) in streams.iter().enumerate() {
        for (ti, t) in tables[..6].iter().enumerate() {
            support::create_topic(&topic(s, t), 2);
            let first: Vec<&Rec> = staged[si][ti].iter().filter(|r| r.ts < mid).collect();
            write(&topic(s, t), &first);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("verifier.toml");
    std::fs::write(
        &config,
        format!(
            "[primary]\nname = \"primary\"\ntopic-prefix = \"{name}-primary.shop.\"\n\
             [[replicas]]\nname = \"replica-1\"\ntopic-prefix = \"{name}-replica-1.shop.\"\n"
        ),
    )
    .unwrap();
    let mut v = Verifier::start(
        &name,
        &[
            "--config".into(),
            config.display().to_string(),
            "--group-id".into(),
            format!("{name}-group"),
            "--registry-url".into(),
            support::registry_url(),
            "--set".into(),
            "service.discovery-interval-s=1".into(),
            // (The copies are not registered under their own subjects.)
            "--set".into(),
            "verify.check-subjects=false".into(),
            // The replica's records of the first half end a little behind the primary's.
            "--set".into(),
            "verify.max-replica-lag-ms=3600000".into(),
            "--set".into(),
            "verify.silent-after-ms=3600000".into(),
        ],
    );
    v.wait_for("/readyz", Duration::from_secs(60), |s, _| s == 200);
    v.wait_for("/metrics", Duration::from_secs(60), |_, b| {
        b.lines()
            .any(|l| l.starts_with("cdc_verifier_windows_compared_total ") && !l.ends_with(" 0"))
    });

    // `orders` appears: all its records, but one of the replica's late ones is lost.
    let orders = |si: usize| &staged[si][6];
    let victim = orders(1)
        .iter()
        .position(|r| r.value.is_some() && r.ts > hi - (hi - lo) / 4)
        .unwrap();
    support::create_topic(&topic("primary", "orders"), 2);
    support::create_topic(&topic("replica-1", "orders"), 2);
    write(
        &topic("primary", "orders"),
        &orders(0).iter().collect::<Vec<_>>(),
    );
    let kept: Vec<&Rec> = orders(1)
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, r)| r)
        .collect();
    write(&topic("replica-1", "orders"), &kept);
    for (si, s) in streams.iter().enumerate() {
        for (ti, t) in tables[..6].iter().enumerate() {
            let second: Vec<&Rec> = staged[si][ti].iter().filter(|r| r.ts >= mid).collect();
            write(&topic(s, t), &second);
        }
    }

    // The loss is found, in `orders`, and nothing else is.
    wait_for_alerts(&mut v, Duration::from_secs(120), |a| {
        a.iter()
            .any(|x| x.kind == "DataMismatch" && x.table.as_deref() == Some("orders"))
    });
    std::thread::sleep(Duration::from_secs(5));
    let a = live::alerts(&v.alerts);
    assert!(
        a.iter().all(|x| x.kind == "DataMismatch"
            && x.replica == "replica-1"
            && x.table.as_deref() == Some("orders")),
        "{a:#?}"
    );
    for s in streams {
        let events = v
            .metric(&format!(
                "cdc_verifier_events_total{{stream=\"{s}\",table=\"orders\"}}"
            ))
            .unwrap_or(0.0);
        assert!(events > 100.0, "{s}: {events} orders events verified");
    }
    assert!(v.log().contains("new topics found"), "{}", v.log());
    let (status, log) = v.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn records_deleted_before_they_were_read_are_counted_and_logged() {
    support::require_services();
    let name = support::unique_name("disc-gap");
    let prefix = format!("{name}-");
    live::simulate(&prefix, "clean", 4_000, &[]);
    let topic = format!("{prefix}primary.shop.orders");
    let group = format!("{name}-group");
    assert!(support::watermarks(&topic, 0).1 > 20);
    // The group read partition 0 up to offset 5; then retention deleted up to offset 15.
    {
        let c = support::consumer(&group, "read_committed");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(5))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(15))
        .unwrap();
    let admin = support::admin();
    let opts = AdminOptions::new().operation_timeout(Some(support::SERVICE_TIMEOUT));
    support::block_on(admin.delete_records(&tpl, &opts)).unwrap();
    assert_eq!(support::watermarks(&topic, 0).0, 15);

    let mut v = Verifier::start(
        &name,
        &[
            "--topic-prefix".into(),
            prefix.clone(),
            "--group-id".into(),
            group,
            "--registry-url".into(),
            support::registry_url(),
        ],
    );
    let skipped =
        format!("cdc_verifier_records_skipped_total{{topic=\"{topic}\",partition=\"0\"}} 10");
    v.wait_for("/metrics", Duration::from_secs(60), |_, b| {
        b.contains(&skipped)
    });
    let log = v.log();
    assert!(
        log.contains("records deleted before they were read") && log.contains("records=10"),
        "{log}"
    );
    // It reads on from the first record left.
    v.wait_for("/readyz", Duration::from_secs(60), |s, _| s == 200);
    let (status, log) = v.stop();
    assert!(status.success(), "{log}");
}
