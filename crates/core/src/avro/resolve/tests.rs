use super::*;

fn canon(writer: &str, reader: &str, datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let w = Schema::parse_str(writer).unwrap();
    let r = Schema::parse_str(reader).unwrap();
    let plan = Plan::compile(&w, w.root(), &r, r.root());
    let mut scratch = Scratch::default();
    let mut rd = Reader::new(datum);
    let out = plan.canonical(&w, &mut rd, &mut scratch)?.bytes().to_vec();
    rd.finish()?;
    Ok(out)
}

fn enc_long(v: i64) -> Vec<u8> {
    let mut b = Vec::new();
    write_long(&mut b, v);
    b
}

#[test]
fn identity_returns_the_input_slice() {
    let s = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"s","type":"string"}]}"#;
    let mut d = enc_long(300);
    d.extend(enc_long(2));
    d.extend(b"hi");
    assert_eq!(canon(s, s, &d).unwrap(), d);
}

#[test]
fn non_minimal_varint_is_canonicalized() {
    let s = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#;
    assert_eq!(canon(s, s, &[0x82, 0x00]).unwrap(), vec![0x02]);
}

#[test]
fn promotions_give_the_readers_encoding() {
    let int = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let long = int.replace("\"int\"", "\"long\"");
    let float = int.replace("\"int\"", "\"float\"");
    let double = int.replace("\"int\"", "\"double\"");
    assert_eq!(canon(int, &long, &enc_long(-7)).unwrap(), enc_long(-7));
    assert_eq!(
        canon(int, &float, &enc_long(3)).unwrap(),
        3.0f32.to_le_bytes()
    );
    assert_eq!(
        canon(int, &double, &enc_long(3)).unwrap(),
        3.0f64.to_le_bytes()
    );
    assert_eq!(
        canon(&float, &double, &1.5f32.to_le_bytes()).unwrap(),
        1.5f64.to_le_bytes()
    );
    let st = int.replace("\"int\"", "\"string\"");
    let by = int.replace("\"int\"", "\"bytes\"");
    assert_eq!(
        canon(&st, &by, &[0x04, b'h', b'i']).unwrap(),
        vec![0x04, b'h', b'i']
    );
    assert!(
        canon(&long, int, &enc_long(1)).is_err(),
        "long is not readable as int"
    );
}

#[test]
fn missing_field_takes_the_default_and_extra_field_is_skipped() {
    let v1 = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"gone","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"currency","type":"string","default":"USD"}]}"#;
    let mut d = enc_long(5);
    d.extend([0x02, b'x']);
    let mut want = enc_long(5);
    want.extend([0x06, b'U', b'S', b'D']);
    assert_eq!(canon(v1, v2, &d).unwrap(), want);
}

#[test]
fn reordered_fields_are_emitted_in_reader_order() {
    let w = r#"{"type":"record","name":"V","fields":[{"name":"b","type":"long"},{"name":"a","type":"long"}]}"#;
    let r = r#"{"type":"record","name":"V","fields":[{"name":"a","type":"long"},{"name":"b","type":"long"}]}"#;
    let mut d = enc_long(1);
    d.extend(enc_long(2));
    let mut want = enc_long(2);
    want.extend(enc_long(1));
    assert_eq!(canon(w, r, &d).unwrap(), want);
}

#[test]
fn unions_match_by_type_not_index() {
    let w =
        r#"{"type":"record","name":"V","fields":[{"name":"x","type":["null","long","string"]}]}"#;
    let r =
        r#"{"type":"record","name":"V","fields":[{"name":"x","type":["string","null","long"]}]}"#;
    // writer branch 1 (long 7) -> reader branch 2
    let mut d = enc_long(1);
    d.extend(enc_long(7));
    let mut want = enc_long(2);
    want.extend(enc_long(7));
    assert_eq!(canon(w, r, &d).unwrap(), want);
    // writer plain long into reader ["null","long"]
    let w2 = r#"{"type":"record","name":"V","fields":[{"name":"x","type":"long"}]}"#;
    let r2 = r#"{"type":"record","name":"V","fields":[{"name":"x","type":["null","long"]}]}"#;
    let mut want2 = enc_long(1);
    want2.extend(enc_long(7));
    assert_eq!(canon(w2, r2, &enc_long(7)).unwrap(), want2);
}

#[test]
fn enums_match_by_symbol() {
    let w = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
    let r = r#"{"type":"enum","name":"E","symbols":["C","B","A","D"]}"#;
    assert_eq!(canon(w, r, &enc_long(0)).unwrap(), enc_long(2));
    let r_no_c = r#"{"type":"enum","name":"E","symbols":["A","B"],"default":"B"}"#;
    assert_eq!(canon(w, r_no_c, &enc_long(2)).unwrap(), enc_long(1));
    assert!(canon(w, w, &enc_long(3)).is_err());
}

#[test]
fn decimals_compare_by_value() {
    let d2 = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;
    let d4 = r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":4}"#;
    let fx =
        r#"{"type":"fixed","name":"F","size":8,"logicalType":"decimal","precision":10,"scale":2}"#;
    // 12.34 at scale 2 = 1234 = 0x04D2; sign-extended form 0x00 0x04 0xD2 is the same value
    assert_eq!(
        canon(d2, d2, &[0x04, 0x04, 0xD2]).unwrap(),
        vec![0x04, 0x04, 0xD2]
    );
    assert_eq!(
        canon(d2, d2, &[0x06, 0x00, 0x04, 0xD2]).unwrap(),
        vec![0x04, 0x04, 0xD2]
    );
    // rescaled to scale 4: 123400 = 0x01E208
    assert_eq!(
        canon(d2, d4, &[0x04, 0x04, 0xD2]).unwrap(),
        vec![0x06, 0x01, 0xE2, 0x08]
    );
    // fixed writer, bytes reader; negative value -1 sign-extended
    assert_eq!(canon(fx, d2, &[0xff; 8]).unwrap(), vec![0x02, 0xff]);
    assert!(canon(d4, d2, &[0x02, 0x01]).is_err(), "scale cannot shrink");
}

#[test]
fn timestamps_compare_by_value() {
    let ms = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
    let us = r#"{"type":"long","logicalType":"timestamp-micros"}"#;
    assert_eq!(
        canon(ms, us, &enc_long(1_723_650_300_000)).unwrap(),
        enc_long(1_723_650_300_000_000)
    );
    assert_eq!(
        canon(us, ms, &enc_long(1_723_650_300_000_999)).unwrap(),
        enc_long(1_723_650_300_000)
    );
    let date = r#"{"type":"int","logicalType":"date"}"#;
    assert_eq!(
        canon(date, date, &enc_long(19949)).unwrap(),
        enc_long(19949)
    );
    let uuid = r#"{"type":"string","logicalType":"uuid"}"#;
    let u = b"\x48123e4567-e89b-12d3-a456-426614174000";
    assert_eq!(canon(uuid, uuid, u).unwrap(), u.to_vec());
    let tm = r#"{"type":"int","logicalType":"time-millis"}"#;
    let tu = r#"{"type":"long","logicalType":"time-micros"}"#;
    assert_eq!(canon(tm, tu, &enc_long(1000)).unwrap(), enc_long(1_000_000));
}

#[test]
fn arrays_and_maps_collapse_blocks() {
    let a = r#"{"type":"array","items":"long"}"#;
    // two blocks [1],[2] vs one block [1,2]
    let two = [0x02, 0x02, 0x02, 0x04, 0x00];
    let one = [0x04, 0x02, 0x04, 0x00];
    assert_eq!(canon(a, a, &two).unwrap(), one.to_vec());
    assert_eq!(canon(a, a, &one).unwrap(), one.to_vec());
    // negative count with byte size
    let neg = [0x03, 0x04, 0x02, 0x04, 0x00];
    assert_eq!(canon(a, a, &neg).unwrap(), one.to_vec());
    let m = r#"{"type":"map","values":"int"}"#;
    let mm = [0x02, 0x02, b'k', 0x06, 0x00];
    assert_eq!(canon(m, m, &mm).unwrap(), mm.to_vec());
}

#[test]
fn bad_input_is_a_typed_error() {
    let s = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"u","type":["null","long"]}]}"#;
    assert!(matches!(
        canon(s, s, &[0x08, b'a']).unwrap_err().kind,
        DecodeErrorKind::LengthBeyondInput { .. }
    ));
    assert!(matches!(
        canon(s, s, &[0x02, 0xff, 0x00]).unwrap_err().kind,
        DecodeErrorKind::InvalidUtf8
    ));
    assert!(matches!(
        canon(s, s, &[0x00, 0x06]).unwrap_err().kind,
        DecodeErrorKind::UnionIndex {
            index: 3,
            branches: 2
        }
    ));
    assert!(matches!(
        canon(s, s, &[0x00, 0x00, 0x00]).unwrap_err().kind,
        DecodeErrorKind::TrailingBytes(1)
    ));
}

#[test]
fn a_huge_block_of_nulls_is_refused_not_looped() {
    let a = r#"{"type":"array","items":"null"}"#;
    let mut d = enc_long(i64::MAX / 2);
    d.push(0);
    assert!(matches!(
        canon(a, a, &d).unwrap_err().kind,
        DecodeErrorKind::LengthBeyondInput { .. }
    ));
    let small = [0x06, 0x00];
    assert_eq!(canon(a, a, &small).unwrap(), small.to_vec());
}

#[test]
fn wide_decimals_keep_their_bytes() {
    let d = r#"{"type":"bytes","logicalType":"decimal","precision":60,"scale":2}"#;
    let mut wide = vec![0x22u8];
    wide.extend([0x7fu8; 17]);
    assert_eq!(canon(d, d, &wide).unwrap(), wide);
    let mut padded = vec![0x24u8, 0x00];
    padded.extend([0x7fu8; 17]);
    assert_eq!(canon(d, d, &padded).unwrap(), wide);
}

#[test]
fn deep_recursion_is_bounded() {
    let s = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
    let mut d = vec![0x02u8; 1000];
    d.push(0);
    assert_eq!(canon(s, s, &d).unwrap_err().kind, DecodeErrorKind::TooDeep);
}

/// A key of one number is taken as it is exactly when the walk would take it so: the
/// same bytes, the same position after, the same errors (of the walk, which it leaves
/// them to), on every short input.
#[test]
fn a_key_of_one_number_reads_as_the_walk_reads_it() {
    let schemas = [
        r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#,
        r#"{"type":"record","name":"K","fields":[{"name":"id","type":"int"}]}"#,
        r#""long""#,
    ];
    let bytes = [0x00u8, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xff, 0xfe];
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
    let mut taken = 0;
    for text in schemas {
        let schema = Schema::parse_str(text).unwrap();
        let plan = Plan::compile(&schema, schema.root(), &schema, schema.root());
        assert!(plan.one_varint.is_some());
        let walk = Plan {
            one_varint: None,
            ..Plan::compile(&schema, schema.root(), &schema, schema.root())
        };
        for _ in 0..100_000 {
            let x = next();
            let d: Vec<u8> = (0..(x % 13) as usize)
                .map(|i| bytes[((x >> (4 + 3 * i)) % 8) as usize])
                .collect();
            let (mut s1, mut s2) = (Scratch::default(), Scratch::default());
            let (mut r1, mut r2) = (Reader::new(&d), Reader::new(&d));
            let fast = plan
                .canonical(&schema, &mut r1, &mut s1)
                .map(|c| (c.bytes().to_vec(), matches!(c, Canon::Input(_))));
            let slow = walk
                .canonical(&schema, &mut r2, &mut s2)
                .map(|c| (c.bytes().to_vec(), matches!(c, Canon::Input(_))));
            assert_eq!(fast, slow, "{text} {d:?}");
            assert_eq!(
                (r1.pos(), r1.non_minimal),
                (r2.pos(), r2.non_minimal),
                "{text} {d:?}"
            );
            taken += (fast.is_ok() && r1.pos() == d.len()) as usize;
        }
    }
    assert!(taken > 10_000, "{taken}");
}

#[test]
fn a_block_whose_items_do_not_fill_its_size_is_refused_by_every_plan() {
    let a = r#"{"type":"array","items":"long"}"#;
    let d = r#"{"type":"array","items":"double"}"#;
    // [1, 2] as one block of count -2 declaring 3 bytes; the items take 2.
    let bad = [0x03, 0x06, 0x02, 0x04, 0x00];
    for reader in [a, d] {
        assert_eq!(
            canon(a, reader, &bad).unwrap_err().kind,
            DecodeErrorKind::BlockSize {
                declared: 3,
                actual: 2
            },
            "read with {reader}"
        );
    }
    // Declaring the bytes the items take is accepted by both.
    let good = [0x03, 0x04, 0x02, 0x04, 0x00];
    assert!(canon(a, a, &good).is_ok() && canon(a, d, &good).is_ok());
}

#[test]
fn an_int_beyond_32_bits_is_refused_whatever_it_is_read_as() {
    let i = r#""int""#;
    let big = enc_long(1 << 40);
    for reader in [i, r#""long""#, r#""float""#, r#""double""#] {
        assert!(
            matches!(
                canon(i, reader, &big).unwrap_err().kind,
                DecodeErrorKind::IntOutOfRange(_)
            ),
            "read as {reader}"
        );
    }
    let millis = r#"{"type":"int","logicalType":"time-millis"}"#;
    let micros = r#"{"type":"long","logicalType":"time-micros"}"#;
    assert!(matches!(
        canon(millis, micros, &big).unwrap_err().kind,
        DecodeErrorKind::IntOutOfRange(_)
    ));
}
