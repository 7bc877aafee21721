use super::*;

#[test]
fn defaults_are_valid_and_name_two_replicas() {
    let c = Config::defaults();
    assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(c.replicas.len(), 2);
    assert_eq!(c.route("replica-2.shop.orders"), Some((2, "orders".into())));
    assert_eq!(c.route("elsewhere.orders"), None);
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "[kafka]\nbootstrap-servers = \"file:1\"\ngroup-id = \"from-file\"\n",
    )
    .unwrap();
    let env = vec![
        (
            "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS".to_string(),
            "env:2".to_string(),
        ),
        (
            "CDC_VERIFIER__VERIFY__CUT_INTERVAL_MS".to_string(),
            "500".to_string(),
        ),
        (
            "CDC_VERIFIER__REPLICAS__0__NAME".to_string(),
            "r-one".to_string(),
        ),
    ];
    let c = Config::load(
        Some(&f),
        &env,
        &[("registry.url".into(), "http://flag:3".into())],
    )
    .unwrap();
    assert_eq!(c.kafka.bootstrap_servers, "env:2");
    assert_eq!(c.kafka.group_id, "from-file");
    assert_eq!(c.verify.timing.cut_interval_ms, 500);
    assert_eq!(c.replicas[0].name, "r-one");
    assert_eq!(c.registry.url, "http://flag:3");
}

#[test]
fn a_wrong_setting_fails_naming_it() {
    let err = Config::load(
        None,
        &[("CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVER".into(), "x".into())],
        &[],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("bootstrap-server"), "{err:#}");
    let err =
        Config::load(None, &[], &[("verify.cut-interval-ms".into(), "0".into())]).unwrap_err();
    assert!(format!("{err:#}").contains("cut-interval-ms"), "{err:#}");
    let err = Config::load(
        None,
        &[],
        &[("verify.cut-interval-ms".into(), "soon".into())],
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("verify.cut-interval-ms: invalid type"),
        "{err:#}"
    );
    let err = Config::load(None, &[], &[("verify.buckets".into(), "many".into())]).unwrap_err();
    assert!(
        format!("{err:#}").contains("verify.buckets: invalid type"),
        "{err:#}"
    );
    let err = Config::load(None, &[], &[("verify.nope".into(), "1".into())]).unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown field `nope`"),
        "{err:#}"
    );
    let err = Config::load(
        None,
        &[],
        &[("verify.max-publish-skew-ms".into(), "100".into())],
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("verify.max-publish-skew-ms: must be at least"),
        "{err:#}"
    );
    let err = Config::load(
        None,
        &[],
        &[("registry.url".into(), "localhost:8081".into())],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("registry.url"), "{err:#}");
}

#[test]
fn format_is_typed_and_named_in_errors() {
    assert_eq!(Config::defaults().verify.format, Format::Auto);
    let c = Config::load(
        None,
        &[("CDC_VERIFIER__VERIFY__FORMAT".into(), "json".into())],
        &[],
    )
    .unwrap();
    assert_eq!(c.verify.format, Format::Json);
    assert!(toml::to_string(&c).unwrap().contains("format = \"json\""));
    for bad in ["xml", "1"] {
        let err = Config::load(None, &[], &[("verify.format".into(), bad.into())]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!(
                r#"verify.format: expected "auto", "avro" or "json", got "{bad}""#
            )),
            "{msg}"
        );
    }
}

/// Loads with one `--set key=value` and returns the error's text.
fn error_of(key: &str, value: &str) -> String {
    let err = Config::load(None, &[], &[(key.into(), value.into())]).unwrap_err();
    format!("{err:#}")
}

#[test]
fn position_is_typed_and_named_in_errors() {
    assert_eq!(Config::defaults().verify.position, PositionField::Gtid);
    let c = Config::load(
        None,
        &[("CDC_VERIFIER__VERIFY__POSITION".into(), "lsn".into())],
        &[],
    )
    .unwrap();
    assert_eq!(c.engine().position, PositionField::Lsn);
    let c = Config::load(None, &[], &[("verify.position".into(), "txId".into())]).unwrap();
    assert_eq!(c.verify.position, PositionField::Field("txId".into()));
    assert!(toml::to_string(&c).unwrap().contains("position = \"txId\""));
    for bad in ["", "tx id", "7", "source.gtid"] {
        let msg = error_of("verify.position", bad);
        assert!(
            msg.contains(&format!(
                r#"verify.position: expected "gtid", "lsn" or the name of a `source` field, got "{bad}""#
            )),
            "{msg}"
        );
    }
}

#[test]
fn key_ranges_are_typed_and_named_in_errors() {
    let c = Config::load(
        None,
        &[],
        &[
            ("verify.key-ranges".into(), "integer".into()),
            ("verify.range-width".into(), "500".into()),
        ],
    )
    .unwrap();
    assert_eq!(c.verify.key_ranges, KeyRangeKind::Integer);
    assert!(matches!(
        c.engine().ranges,
        KeyRanges::Integer { width: 500 }
    ));
    assert!(matches!(
        Config::defaults().engine().ranges,
        KeyRanges::Hash { buckets: 1024 }
    ));
    let msg = error_of("verify.key-ranges", "hsah");
    assert!(
        msg.contains(r#"verify.key-ranges: expected "hash" or "integer", got "hsah""#),
        "{msg}"
    );
}

#[test]
fn drill_down_is_typed_and_named_in_errors() {
    let c = Config::load(
        None,
        &[],
        &[(
            "verify.drill-down".into(),
            "[\"orders:3\", \"a:b:7\"]".into(),
        )],
    )
    .unwrap();
    assert_eq!(
        c.verify.drill_down,
        [
            DrillRange {
                table: "orders".into(),
                range: 3
            },
            DrillRange {
                table: "a:b".into(),
                range: 7
            }
        ]
    );
    assert_eq!(
        c.engine().drill,
        Drill::Ranges(vec![("orders".into(), 3), ("a:b".into(), 7)])
    );
    assert!(
        toml::to_string(&c)
            .unwrap()
            .contains(r#"drill-down = ["orders:3", "a:b:7"]"#)
    );
    assert_eq!(Config::defaults().engine().drill, Drill::Off);
    for bad in ["orders", "orders:x", ":3"] {
        let msg = error_of("verify.drill-down", &format!("[\"{bad}\"]"));
        assert!(
            msg.contains(&format!(
                r#"verify.drill-down: expected "table:range" with a whole number as range, got "{bad}""#
            )),
            "{msg}"
        );
    }
}

#[test]
fn log_format_is_typed_and_named_in_errors() {
    assert_eq!(Config::defaults().service.log_format, LogFormat::Text);
    let c = Config::load(
        None,
        &[("CDC_VERIFIER__SERVICE__LOG_FORMAT".into(), "json".into())],
        &[],
    )
    .unwrap();
    assert_eq!(c.service.log_format, LogFormat::Json);
    let msg = error_of("service.log-format", "xml");
    assert!(
        msg.contains(r#"service.log-format: expected "text" or "json", got "xml""#),
        "{msg}"
    );
}

#[test]
fn listen_is_typed_and_named_in_errors() {
    let c = Config::load(None, &[], &[("service.listen".into(), "[::1]:0".into())]).unwrap();
    assert_eq!(c.service.listen, "[::1]:0".parse::<SocketAddr>().unwrap());
    assert!(
        toml::to_string(&Config::defaults())
            .unwrap()
            .contains(r#"listen = "127.0.0.1:9464""#)
    );
    for bad in ["localhost", "127.0.0.1", "9464"] {
        let msg = error_of("service.listen", bad);
        assert!(
            msg.contains(&format!(
                r#"service.listen: expected an address as ip:port (127.0.0.1:9464, [::]:9464), got "{bad}""#
            )),
            "{msg}"
        );
    }
}

#[test]
fn timing_is_read_into_the_engine() {
    let c = Config::load(
        None,
        &[("CDC_VERIFIER__VERIFY__CONFIRM_MS".into(), "1234".into())],
        &[("verify.check-subjects".into(), "false".into())],
    )
    .unwrap();
    let e = c.engine();
    assert_eq!(e.timing.confirm_ms, 1234);
    assert_eq!(e.timing.cut_interval_ms, c.verify.timing.cut_interval_ms);
    assert!(!e.check_subjects);
    assert_eq!(Config::defaults().verify.timing, Timing::default());
}

#[test]
fn secrets_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[registry]\npassword = \"hunter2\"\n[kafka.secret-properties]\n\"sasl.password\" = \"s3cret\"\n").unwrap();
    let c = Config::load(Some(&f), &[], &[]).unwrap();
    assert_eq!(c.registry.password.as_ref().unwrap().expose(), "hunter2");
    let shown = format!("{c:?} {}", toml::to_string(&c).unwrap());
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(shown.contains("***"));
}

#[test]
fn a_property_that_is_not_text_is_refused_without_its_value() {
    let e = error_of("kafka.properties.sasl.password", "[\"hunter2\"]");
    assert!(e.contains("sasl.password: expected a text value"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

fn load_file(text: &str) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.toml");
    std::fs::write(&f, text).unwrap();
    Config::load(Some(&f), &[], &[])
}

#[test]
fn column_rules_are_read_one_treatment_each_and_named_in_errors() {
    use cdc_verifier_core::rules::{TimeUnit, Treatment};
    let c = load_file(
        "[[verify.column-rules]]\ntable = \"orders\"\ncolumns = [\"updated_at\"]\nignore = true\n\
         [[verify.column-rules]]\ntable = \"*\"\ncolumns = [\"*\"]\nfloat-decimals = 6\ntime-precision = \"ms\"\n",
    )
    .unwrap();
    let rules = c.engine().rules;
    let lines: Vec<String> = rules.0.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        lines,
        [
            "orders: updated_at ignored",
            "*: * floats rounded to 6 decimals",
            "*: * times compared to the ms"
        ]
    );
    assert_eq!(
        rules.0[2].treatment,
        Treatment::TimePrecision(TimeUnit::Millis)
    );
    assert!(Config::defaults().engine().rules.is_empty());
    for (bad, says) in [
        ("table = \"t\"\ncolumns = [\"a\"]\n", "no treatment"),
        (
            "table = \"t\"\ncolumns = [\"*\"]\nignore = true\n",
            "`ignore` needs the columns named",
        ),
        (
            "table = \"t\"\ncolumns = [\"a\"]\ntime-precision = \"min\"\n",
            "expected \"s\", \"ms\"",
        ),
        (
            "table = \"t\"\ncolumns = []\ncase-insensitive = true\n",
            "`columns` must name",
        ),
        (
            "table = \"t\"\ncolumns = [\"a\"]\nignore = true\ncase-insensitive = true\n",
            "use it alone",
        ),
        (
            "table = \"t\"\ncolumns = [\"a\"]\nround = 2\n",
            "unknown field `round`",
        ),
    ] {
        let err = load_file(&format!("[[verify.column-rules]]\n{bad}")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(says), "{bad}: {msg}");
    }
}
