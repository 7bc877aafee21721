//! Kafka Connect's `JsonConverter` with `schemas.enable=true`: every key and value is
//! `{"schema": {…Connect schema…}, "payload": {…}}`. Such records are transcoded at the edge
//! into what Confluent's (or Apicurio's) `AvroConverter` would have written for the same
//! Connect data — the Avro schema its `AvroData` derives from the Connect schema, and the Avro
//! binary datum of the payload — so that the engine, its decoders and its schema checks read
//! them as they read Avro, and a row hashes the same whichever converter carried it.
//!
//! Each distinct Connect schema gets a synthetic schema id in [`FIRST_ID`]`..=`[`LAST_ID`],
//! registered under the subject the caller names (`<topic>-value`, `<topic>-key`), versions
//! 1, 2, … in the order first seen per subject. [`WithConnectJson`] answers those ids and
//! passes every other id to the real source.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::source::{FetchError, RegisteredSchema, SchemaSource, SubjectVersion};

/// The first synthetic schema id. Registries number their ids from 1 up, far below; the
/// engine keeps the top bit of an id for itself, so the range ends below `0x8000_0000`.
pub const FIRST_ID: u32 = 0x7000_0000;
/// The last synthetic schema id.
pub const LAST_ID: u32 = 0x7fff_ffff;

/// Whether `id` is in the synthetic range.
pub fn is_synthetic(id: u32) -> bool {
    (FIRST_ID..=LAST_ID).contains(&id)
}

/// Whether `bytes` look like a JSON document: the first byte that is not white space is `{`.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectJsonError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error(
        "a JSON document without `schema` and `payload` (a JsonConverter with schemas.enable=false?); \
         the verifier needs schemas.enable=true"
    )]
    NoEnvelope,
    #[error("`{0}` is missing from the JsonConverter document")]
    Missing(&'static str),
    #[error("`schema` is null: the record was written without a Connect schema")]
    NullSchema,
    #[error("Connect schema: {0}")]
    Schema(String),
    #[error("payload does not match its schema: {0}")]
    Payload(String),
    #[error("no synthetic schema id is left")]
    IdsExhausted,
}

// ---------------------------------------------------------------------------------------------
// JSON

const MAX_DEPTH: usize = 64;

/// A JSON value borrowing from the input; numbers are kept as their text so that integers
/// are read exactly and floats are rounded once, by the type they are read as.
#[derive(Debug, Clone, PartialEq)]
enum J<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Cow<'a, str>),
    Arr(Vec<J<'a>>),
    Obj(Vec<(Cow<'a, str>, J<'a>)>),
}

impl<'a> J<'a> {
    fn get(&self, key: &str) -> Option<&J<'a>> {
        match self {
            J::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Num(_) => "a number",
            J::Str(_) => "a string",
            J::Arr(_) => "an array",
            J::Obj(_) => "an object",
        }
    }

    /// The value as JSON text again (strings re-escaped, numbers as they were written).
    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => quote(out, s),
            J::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    quote(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn quote(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(b: &'a [u8]) -> Self {
        Parser { b, i: 0 }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    fn end(&mut self) -> Result<(), String> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<J<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(J::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    m.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(J::Obj(m));
                        }
                        _ => return Err(self.err("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(J::Arr(a));
                }
                loop {
                    a.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(J::Arr(a));
                        }
                        _ => return Err(self.err("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => Ok(J::Str(self.string()?)),
            Some(b't') => self.literal("true", J::Bool(true)),
            Some(b'f') => self.literal("false", J::Bool(false)),
            Some(b'n') => self.literal("null", J::Null),
            Some(b'-' | b'0'..=b'9') => Ok(J::Num(self.number()?)),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    /// Passes over one value without building it, returning where it starts. Lenient: what
    /// it passes over is either parsed in full later or equal to text that was.
    fn skip(&mut self) -> Result<usize, String> {
        self.ws();
        let start = self.i;
        let mut depth = 0usize;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unexpected end of input"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    loop {
                        match self.peek() {
                            None => return Err(self.err("unterminated string")),
                            Some(b'\\') => self.i += 2,
                            Some(b'"') => {
                                self.i += 1;
                                break;
                            }
                            Some(_) => self.i += 1,
                        }
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                    continue;
                }
                b'}' | b']' => {
                    if depth == 0 {
                        return Err(self.err("expected a JSON value"));
                    }
                    depth -= 1;
                    self.i += 1;
                }
                b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => {
                    if depth == 0 {
                        return Err(self.err("expected a JSON value"));
                    }
                    self.i += 1;
                    continue;
                }
                _ => {
                    while let Some(c) = self.peek() {
                        if matches!(
                            c,
                            b',' | b'}'
                                | b']'
                                | b':'
                                | b'"'
                                | b'{'
                                | b'['
                                | b' '
                                | b'\t'
                                | b'\n'
                                | b'\r'
                        ) {
                            break;
                        }
                        self.i += 1;
                    }
                }
            }
            if depth == 0 {
                return Ok(start);
            }
        }
    }

    fn literal(&mut self, word: &str, v: J<'a>) -> Result<J<'a>, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn number(&mut self) -> Result<&'a str, String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while let Some(b'0'..=b'9') = p.peek() {
                p.i += 1;
            }
            p.i > s
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else if !digits(self) {
            return Err(self.err("malformed number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(self.err("malformed number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("malformed number"));
            }
        }
        Ok(std::str::from_utf8(&self.b[start..self.i]).expect("ASCII"))
    }

    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        self.i += 1;
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    let s = std::str::from_utf8(&self.b[start..self.i])
                        .map_err(|_| self.err("invalid UTF-8"))?;
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                b'\\' => break,
                0..=0x1f => return Err(self.err("control character in string")),
                _ => self.i += 1,
            }
        }
        let mut buf: Vec<u8> = self.b[start..self.i].to_vec();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => {
                    return String::from_utf8(buf)
                        .map(Cow::Owned)
                        .map_err(|_| self.err("invalid UTF-8"));
                }
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return Err(self.err("lone surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("lone surrogate"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("lone surrogate"))?
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in string")),
                c => buf.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }
}

/// The `schema` text span and the parsed `payload` of a JsonConverter document.
fn split_document(doc: &[u8]) -> Result<(std::ops::Range<usize>, J<'_>), ConnectJsonError> {
    let mut p = Parser::new(doc);
    let e = ConnectJsonError::Json;
    p.expect(b'{').map_err(e)?;
    let (mut schema, mut payload) = (None, None);
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let k = p.string().map_err(e)?;
            p.expect(b':').map_err(e)?;
            match &*k {
                "schema" => {
                    let start = p.skip().map_err(e)?;
                    schema = Some(start..p.i);
                }
                "payload" => payload = Some(p.value(1).map_err(e)?),
                _ => {
                    p.skip().map_err(e)?;
                }
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(e(p.err("expected `,` or `}`"))),
            }
        }
    }
    p.end().map_err(e)?;
    match (schema, payload) {
        (None, None) => Err(ConnectJsonError::NoEnvelope),
        (None, Some(_)) => Err(ConnectJsonError::Missing("schema")),
        (Some(_), None) => Err(ConnectJsonError::Missing("payload")),
        (Some(s), Some(p)) => Ok((s, p)),
    }
}

// ---------------------------------------------------------------------------------------------
// Base64 (the standard alphabet Jackson writes, padded or not)

fn b64_val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// The decoded length of `s`, or `None` when it is not base64.
fn b64_len(s: &[u8]) -> Option<usize> {
    let t = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    if (s.len() != t.len() && !s.len().is_multiple_of(4)) || t.len() % 4 == 1 {
        return None;
    }
    Some(t.len() / 4 * 3 + (t.len() % 4).saturating_sub(1))
}

fn b64_decode(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    b64_len(s)?;
    let t = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    for chunk in t.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= b64_val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(())
}

fn b64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let mut acc = 0u32;
        for (i, x) in chunk.iter().enumerate() {
            acc |= (*x as u32) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(acc >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Connect schemas

/// A Connect schema compiled for encoding payloads.
#[derive(Debug, Clone)]
struct CSchema {
    ty: CType,
    /// Optional: the index of the null branch of its Avro union (`["null", T]`, or
    /// `[T, "null"]` when it has a default).
    null_index: Option<u8>,
    /// The default's datum, written for a null of a required value (as JsonConverter reads it).
    default: Option<Box<[u8]>>,
}

#[derive(Debug, Clone)]
enum CType {
    Int {
        min: i64,
        max: i64,
    },
    Long,
    Float,
    Double,
    Boolean,
    String,
    Bytes,
    Decimal {
        scale: u32,
    },
    Fixed(usize),
    Array(Box<CSchema>),
    /// String keys: an Avro map.
    Map(Box<CSchema>),
    /// Other keys: an Avro array of `{key, value}` records.
    Entries(Box<CSchema>, Box<CSchema>),
    Struct(Vec<(String, CSchema)>),
}

const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const DATE: &str = "org.apache.kafka.connect.data.Date";
const TIME: &str = "org.apache.kafka.connect.data.Time";
const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
/// The namespace of the records `AvroData` names itself.
const CONNECT_NS: &str = "io.confluent.connect.avro";

/// Derives the Avro schema text as `AvroData` does (`connect.meta.data=true`, the default).
struct Compiler<'s, 'a> {
    /// Records defined so far, by full name, with the Connect schema they came from.
    names: HashMap<String, &'s J<'a>>,
    unnamed: u32,
}

fn split_name(full: &str) -> (Option<&str>, &str) {
    match full.rsplit_once('.') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, full),
    }
}

/// A Connect struct as it defines an Avro record: without where it is used.
fn same_struct(a: &J<'_>, b: &J<'_>) -> bool {
    let keep = |e: &&(Cow<'_, str>, J<'_>)| e.0 != "field" && e.0 != "optional";
    match (a, b) {
        (J::Obj(x), J::Obj(y)) => x.iter().filter(keep).eq(y.iter().filter(keep)),
        _ => false,
    }
}

impl<'s, 'a> Compiler<'s, 'a> {
    /// Compiles `s` and writes its Avro type into `out`; `space` is the enclosing namespace.
    fn schema(
        &mut self,
        s: &'s J<'a>,
        space: Option<&str>,
        out: &mut String,
        depth: usize,
    ) -> Result<CSchema, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let J::Obj(_) = s else {
            return Err(format!("a schema is {}, not an object", s.kind()));
        };
        let ty = s
            .get("type")
            .and_then(J::str)
            .ok_or("a schema without `type`")?;
        let optional = matches!(s.get("optional"), Some(J::Bool(true)));
        let name = match s.get("name") {
            None | Some(J::Null) => None,
            Some(J::Str(n)) => Some(&**n),
            Some(o) => return Err(format!("`name` is {}", o.kind())),
        };
        let params: Vec<(&str, &str)> = match s.get("parameters") {
            None | Some(J::Null) => Vec::new(),
            Some(J::Obj(m)) => m
                .iter()
                .map(|(k, v)| {
                    v.str()
                        .map(|v| (&**k, v))
                        .ok_or_else(|| format!("parameter `{k}` is not a string"))
                })
                .collect::<Result<_, _>>()?,
            Some(o) => return Err(format!("`parameters` is {}", o.kind())),
        };
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let default = s.get("default").filter(|d| **d != J::Null);

        if optional {
            out.push('[');
            if default.is_none() {
                out.push_str("\"null\",");
            }
        }
        // Properties before the metadata (decimal's), and the logical type after it.
        let mut pre: Vec<(&str, String)> = Vec::new();
        let mut logical = None;
        let mut connect_type = None;
        let int = |bits: u32| CType::Int {
            min: -(1i64 << (bits - 1)),
            max: (1i64 << (bits - 1)) - 1,
        };
        let mut avro_ty = match ty {
            "int8" => {
                connect_type = Some("int8");
                "int"
            }
            "int16" => {
                connect_type = Some("int16");
                "int"
            }
            "int32" => "int",
            "int64" => "long",
            "float32" => "float",
            "float64" => "double",
            "boolean" => "boolean",
            "string" => "string",
            "bytes" => "bytes",
            "array" => "array",
            "map" => "map",
            "struct" => "record",
            other => return Err(format!("unknown type `{other}`")),
        };
        let mut cty = match ty {
            "int8" => int(8),
            "int16" => int(16),
            "int32" => int(32),
            "int64" => CType::Long,
            "float32" => CType::Float,
            "float64" => CType::Double,
            "boolean" => CType::Boolean,
            "string" => CType::String,
            _ => CType::Bytes,
        };
        match (name, ty) {
            (Some(DECIMAL), "bytes") => {
                let scale: u32 = param("scale")
                    .ok_or("a Decimal without `scale`")?
                    .parse()
                    .map_err(|_| "a Decimal's scale is not a number")?;
                let precision: u32 = match param("connect.decimal.precision") {
                    Some(p) => p
                        .parse()
                        .map_err(|_| "a Decimal's precision is not a number")?,
                    None => 64,
                };
                pre.push(("scale", scale.to_string()));
                pre.push(("precision", precision.to_string()));
                logical = Some("decimal");
                cty = CType::Decimal { scale };
            }
            (Some(DATE), "int32") => logical = Some("date"),
            (Some(TIME), "int32") => logical = Some("time-millis"),
            (Some(TIMESTAMP), "int64") => logical = Some("timestamp-millis"),
            _ => {}
        }
        if ty == "bytes"
            && !matches!(cty, CType::Decimal { .. })
            && let Some(size) = param("connect.fixed.size")
        {
            cty = CType::Fixed(
                size.parse()
                    .map_err(|_| "connect.fixed.size is not a number")?,
            );
            avro_ty = "fixed";
        }

        // The metadata AvroData adds to every type but a union.
        let mut meta: Vec<(&str, String)> = Vec::new();
        if let Some(J::Str(doc)) = s.get("doc") {
            let mut q = String::new();
            quote(&mut q, doc);
            meta.push(("connect.doc", q));
        }
        match s.get("version") {
            Some(J::Num(v)) => meta.push(("connect.version", (*v).to_string())),
            None | Some(J::Null) => {}
            Some(o) => return Err(format!("`version` is {}", o.kind())),
        }
        if !params.is_empty() {
            let mut q = String::from("{");
            for (i, (k, v)) in params.iter().enumerate() {
                if i > 0 {
                    q.push(',');
                }
                quote(&mut q, k);
                q.push(':');
                quote(&mut q, v);
            }
            q.push('}');
            meta.push(("connect.parameters", q));
        }
        let default_at = meta.len();
        if let Some(n) = name {
            let mut q = String::new();
            quote(&mut q, n);
            meta.push(("connect.name", q));
        }
        if let Some(t) = connect_type {
            meta.push(("connect.type", format!("\"{t}\"")));
        }

        // The type itself.
        let props = |out: &mut String, meta: &[(&str, String)], pre: &[(&str, String)]| {
            for (k, v) in pre.iter().chain(meta.iter()) {
                out.push(',');
                quote(out, k);
                out.push(':');
                out.push_str(v);
            }
            if let Some(l) = logical {
                out.push_str(",\"logicalType\":");
                quote(out, l);
            }
        };
        match ty {
            "array" => {
                let items = s.get("items").ok_or("an array schema without `items`")?;
                out.push_str("{\"type\":\"array\",\"items\":");
                let item = self.schema(items, space, out, depth + 1)?;
                cty = CType::Array(Box::new(item));
            }
            "map" => {
                let keys = s.get("keys").ok_or("a map schema without `keys`")?;
                let values = s.get("values").ok_or("a map schema without `values`")?;
                let string_keys = keys.get("type").and_then(J::str) == Some("string")
                    && !matches!(keys.get("optional"), Some(J::Bool(true)));
                if string_keys {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    let v = self.schema(values, space, out, depth + 1)?;
                    cty = CType::Map(Box::new(v));
                } else {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    let (ns, n) = match name {
                        Some(full) => split_name(full),
                        None => (Some(CONNECT_NS), "MapEntry"),
                    };
                    out.push_str("{\"type\":\"record\",");
                    write_name(out, n, ns, space);
                    out.push_str(",\"fields\":[");
                    let (mut k, mut v) = (None, None);
                    for (i, (fname, fs)) in
                        [("key", keys), ("value", values)].into_iter().enumerate()
                    {
                        if i > 0 {
                            out.push(',');
                        }
                        let c = self.field(fname, fs, ns, out, depth)?;
                        if i == 0 { k = Some(c) } else { v = Some(c) }
                    }
                    out.push(']');
                    if name.is_some() {
                        out.push_str(",\"connect.internal.type\":\"MapEntry\"");
                    }
                    out.push('}');
                    cty = CType::Entries(Box::new(k.expect("set")), Box::new(v.expect("set")));
                }
            }
            "struct" => {
                let (ns, n, generated) = match name {
                    Some(full) => {
                        let (ns, n) = split_name(full);
                        (ns.map(str::to_string), n.to_string(), full.to_string())
                    }
                    None => {
                        self.unnamed += 1;
                        let n = format!("ConnectDefault{}", self.unnamed);
                        (
                            Some(CONNECT_NS.to_string()),
                            n.clone(),
                            format!("{CONNECT_NS}.{n}"),
                        )
                    }
                };
                if let Some(prev) = self.names.get(&generated) {
                    if !same_struct(prev, s) {
                        return Err(format!("two different structs are named `{generated}`"));
                    }
                    // Defined before: a reference, relative to the enclosing namespace.
                    if ns.as_deref() == space && ns.is_some() {
                        quote(out, &n);
                    } else {
                        quote(out, &generated);
                    }
                    cty = self.struct_type(s, ns.as_deref(), depth)?;
                } else {
                    self.names.insert(generated.clone(), s);
                    out.push_str("{\"type\":\"record\",");
                    write_name(out, &n, ns.as_deref(), space);
                    if let Some(doc) = param("connect.record.doc") {
                        out.push_str(",\"doc\":");
                        quote(out, doc);
                    }
                    out.push_str(",\"fields\":[");
                    let fields = match s.get("fields") {
                        Some(J::Arr(f)) => f,
                        _ => return Err("a struct schema without `fields`".into()),
                    };
                    let mut cf = Vec::with_capacity(fields.len());
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let fname = f
                            .get("field")
                            .and_then(J::str)
                            .ok_or("a struct field without `field`")?;
                        let c = self.field(fname, f, ns.as_deref(), out, depth)?;
                        cf.push((fname.to_string(), c));
                    }
                    out.push(']');
                    cty = CType::Struct(cf);
                    let mut m = meta.clone();
                    if let Some(d) = default {
                        m.insert(default_at, ("connect.default", connect_default(&cty, d)?));
                    }
                    props(out, &m, &[]);
                    out.push('}');
                }
            }
            _ => {}
        }
        let default_datum = match default {
            Some(d) => {
                let mut b = Vec::new();
                encode_base(&cty, d, &mut b).map_err(|e| format!("the default {}", e.render()))?;
                Some(b.into_boxed_slice())
            }
            None => None,
        };
        if let Some(d) = default {
            meta.insert(default_at, ("connect.default", connect_default(&cty, d)?));
        }
        match ty {
            "struct" | "map" if matches!(cty, CType::Struct(_) | CType::Entries(..)) => {
                if let CType::Entries(..) = cty {
                    props(out, &meta, &pre);
                    out.push('}');
                }
            }
            "array" | "map" => {
                props(out, &meta, &pre);
                out.push('}');
            }
            _ => {
                if let CType::Fixed(size) = cty {
                    let (ns, n) = match name {
                        Some(full) => split_name(full),
                        None => (Some(CONNECT_NS), "FixedBytes"),
                    };
                    out.push_str("{\"type\":\"fixed\",");
                    write_name(out, n, ns, space);
                    out.push_str(&format!(",\"size\":{size}"));
                    props(out, &meta, &pre);
                    out.push('}');
                } else if pre.is_empty() && meta.is_empty() && logical.is_none() {
                    quote(out, avro_ty);
                } else {
                    out.push_str("{\"type\":");
                    quote(out, avro_ty);
                    props(out, &meta, &pre);
                    out.push('}');
                }
            }
        }
        if optional {
            if default.is_some() {
                out.push_str(",\"null\"");
            }
            out.push(']');
        }
        let null_index = optional.then_some(if default.is_some() { 1 } else { 0 });
        Ok(CSchema {
            ty: cty,
            null_index,
            default: default_datum,
        })
    }

    /// The encoding of a struct defined before (its Avro type is a reference).
    fn struct_type(
        &mut self,
        s: &'s J<'a>,
        ns: Option<&str>,
        depth: usize,
    ) -> Result<CType, String> {
        let fields = match s.get("fields") {
            Some(J::Arr(f)) => f,
            _ => return Err("a struct schema without `fields`".into()),
        };
        let mut cf = Vec::with_capacity(fields.len());
        let mut sink = String::new();
        for f in fields {
            let fname = f
                .get("field")
                .and_then(J::str)
                .ok_or("a struct field without `field`")?;
            sink.clear();
            cf.push((fname.to_string(), self.schema(f, ns, &mut sink, depth + 1)?));
        }
        Ok(CType::Struct(cf))
    }

    /// One record field: `{"name", "type", "doc", "default"}` as Avro writes a field.
    fn field(
        &mut self,
        fname: &str,
        fs: &'s J<'a>,
        ns: Option<&str>,
        out: &mut String,
        depth: usize,
    ) -> Result<CSchema, String> {
        out.push_str("{\"name\":");
        quote(out, fname);
        out.push_str(",\"type\":");
        let c = self
            .schema(fs, ns, out, depth + 1)
            .map_err(|e| format!("field `{fname}`: {e}"))?;
        if let Some(J::Str(doc)) = fs.get("doc") {
            out.push_str(",\"doc\":");
            quote(out, doc);
        }
        match fs.get("default").filter(|d| **d != J::Null) {
            Some(d) => {
                out.push_str(",\"default\":");
                out.push_str(&avro_default(&c.ty, d)?);
            }
            None if c.null_index.is_some() => out.push_str(",\"default\":null"),
            None => {}
        }
        out.push('}');
        Ok(c)
    }
}

/// `"name"` and, when it differs from the enclosing one, `"namespace"`, as Avro writes them.
fn write_name(out: &mut String, name: &str, ns: Option<&str>, space: Option<&str>) {
    out.push_str("\"name\":");
    quote(out, name);
    match ns {
        Some(ns) if Some(ns) != space => {
            out.push_str(",\"namespace\":");
            quote(out, ns);
        }
        None if space.is_some() => out.push_str(",\"namespace\":\"\""),
        _ => {}
    }
}

/// The bytes of a bytes or decimal default (base64, or a number for a decimal).
fn default_bytes(ty: &CType, d: &J<'_>) -> Result<Vec<u8>, String> {
    let mut b = Vec::new();
    encode_base(ty, d, &mut b).map_err(|e| format!("the default {}", e.render()))?;
    let mut r = crate::avro::Reader::new(&b);
    let raw = match ty {
        CType::Fixed(n) => r.read_fixed(*n),
        _ => r.read_bytes(),
    }
    .map_err(|e| e.to_string())?;
    Ok(raw.to_vec())
}

/// The `connect.default` property: the default as Connect's JSON (bytes as base64).
fn connect_default(ty: &CType, d: &J<'_>) -> Result<String, String> {
    let mut s = String::new();
    match ty {
        CType::Bytes | CType::Decimal { .. } | CType::Fixed(_) => {
            quote(&mut s, &b64_encode(&default_bytes(ty, d)?))
        }
        _ => d.write(&mut s),
    }
    Ok(s)
}

/// A field's Avro default: bytes as ISO-8859-1 text, the rest as the JSON it is.
fn avro_default(ty: &CType, d: &J<'_>) -> Result<String, String> {
    let mut s = String::new();
    match ty {
        CType::Bytes | CType::Decimal { .. } | CType::Fixed(_) => {
            let latin1: String = default_bytes(ty, d)?.iter().map(|b| *b as char).collect();
            quote(&mut s, &latin1);
        }
        _ => d.write(&mut s),
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// Where a payload left its schema, innermost last when rendered.
#[derive(Debug)]
struct PathErr {
    /// Innermost first.
    path: Vec<String>,
    msg: String,
}

impl PathErr {
    fn new(msg: impl Into<String>) -> Self {
        PathErr {
            path: Vec::new(),
            msg: msg.into(),
        }
    }

    fn at(mut self, seg: impl Into<String>) -> Self {
        self.path.push(seg.into());
        self
    }

    fn render(&self) -> String {
        if self.path.is_empty() {
            return self.msg.clone();
        }
        let mut p = String::new();
        for s in self.path.iter().rev() {
            if !p.is_empty() && !s.starts_with('[') {
                p.push('.');
            }
            p.push_str(s);
        }
        format!("at `{p}`: {}", self.msg)
    }
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn mismatch(expected: &str, v: &J<'_>) -> PathErr {
    PathErr::new(format!("expected {expected}, found {}", v.kind()))
}

fn encode(s: &CSchema, v: Option<&J<'_>>, out: &mut Vec<u8>) -> Result<(), PathErr> {
    let v = v.filter(|v| **v != J::Null);
    match (s.null_index, v) {
        (Some(n), None) => {
            write_long(out, n as i64);
            Ok(())
        }
        (Some(n), Some(v)) => {
            write_long(out, 1 - n as i64);
            encode_base(&s.ty, v, out)
        }
        (None, Some(v)) => encode_base(&s.ty, v, out),
        (None, None) => match &s.default {
            Some(d) => {
                out.extend_from_slice(d);
                Ok(())
            }
            None => Err(PathErr::new("null for a required value")),
        },
    }
}

fn float_text<'v>(v: &'v J<'_>) -> Result<&'v str, PathErr> {
    match v {
        J::Num(n) => Ok(n),
        J::Str(s) if matches!(&**s, "NaN" | "Infinity" | "-Infinity") => Ok(s),
        _ => Err(mismatch("a number", v)),
    }
}

fn parse_float<T: std::str::FromStr>(t: &str) -> Result<T, PathErr> {
    let t = match t {
        "Infinity" => "inf",
        "-Infinity" => "-inf",
        t => t,
    };
    t.parse()
        .map_err(|_| PathErr::new(format!("`{t}` is not a number")))
}

fn encode_base(ty: &CType, v: &J<'_>, out: &mut Vec<u8>) -> Result<(), PathErr> {
    match ty {
        CType::Int { min, max } => {
            let J::Num(n) = v else {
                return Err(mismatch("an integer", v));
            };
            let i: i64 = n
                .parse()
                .map_err(|_| PathErr::new(format!("`{n}` is not an integer")))?;
            if i < *min || i > *max {
                return Err(PathErr::new(format!("{i} is out of range [{min}, {max}]")));
            }
            write_long(out, i);
        }
        CType::Long => {
            let J::Num(n) = v else {
                return Err(mismatch("an integer", v));
            };
            let i: i64 = n
                .parse()
                .map_err(|_| PathErr::new(format!("`{n}` is not a 64-bit integer")))?;
            write_long(out, i);
        }
        CType::Float => out.extend_from_slice(&parse_float::<f32>(float_text(v)?)?.to_le_bytes()),
        CType::Double => out.extend_from_slice(&parse_float::<f64>(float_text(v)?)?.to_le_bytes()),
        CType::Boolean => {
            let J::Bool(b) = v else {
                return Err(mismatch("a boolean", v));
            };
            out.push(*b as u8);
        }
        CType::String => {
            let J::Str(s) = v else {
                return Err(mismatch("a string", v));
            };
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        CType::Bytes | CType::Fixed(_) | CType::Decimal { .. } => {
            if let (CType::Decimal { scale }, J::Num(n)) = (ty, v) {
                let b = decimal_bytes(n, *scale).map_err(PathErr::new)?;
                write_long(out, b.len() as i64);
                out.extend_from_slice(&b);
                return Ok(());
            }
            let J::Str(s) = v else {
                return Err(mismatch("a base64 string", v));
            };
            let len = b64_len(s.as_bytes()).ok_or_else(|| PathErr::new("not base64"))?;
            match ty {
                CType::Fixed(n) if *n != len => {
                    return Err(PathErr::new(format!("{len} bytes, expected {n}")));
                }
                CType::Fixed(_) => {}
                _ => write_long(out, len as i64),
            }
            b64_decode(s.as_bytes(), out).ok_or_else(|| PathErr::new("not base64"))?;
        }
        CType::Array(item) => {
            let J::Arr(a) = v else {
                return Err(mismatch("an array", v));
            };
            if !a.is_empty() {
                write_long(out, a.len() as i64);
                for (i, e) in a.iter().enumerate() {
                    encode(item, Some(e), out).map_err(|e| e.at(format!("[{i}]")))?;
                }
            }
            out.push(0);
        }
        CType::Map(value) => {
            let J::Obj(m) = v else {
                return Err(mismatch("an object", v));
            };
            if !m.is_empty() {
                write_long(out, m.len() as i64);
                for (k, e) in m {
                    write_long(out, k.len() as i64);
                    out.extend_from_slice(k.as_bytes());
                    encode(value, Some(e), out).map_err(|e| e.at(k.to_string()))?;
                }
            }
            out.push(0);
        }
        CType::Entries(key, value) => {
            match v {
                J::Arr(a) => {
                    if !a.is_empty() {
                        write_long(out, a.len() as i64);
                    }
                    for (i, e) in a.iter().enumerate() {
                        let J::Arr(pair) = e else {
                            return Err(mismatch("a [key, value] pair", e).at(format!("[{i}]")));
                        };
                        if pair.len() != 2 {
                            return Err(
                                PathErr::new("expected a [key, value] pair").at(format!("[{i}]"))
                            );
                        }
                        encode(key, Some(&pair[0]), out).map_err(|e| e.at(format!("[{i}].key")))?;
                        encode(value, Some(&pair[1]), out)
                            .map_err(|e| e.at(format!("[{i}].value")))?;
                    }
                }
                J::Obj(m) => {
                    if !m.is_empty() {
                        write_long(out, m.len() as i64);
                    }
                    for (k, e) in m {
                        encode(key, Some(&J::Str(k.clone())), out)
                            .map_err(|e| e.at(k.to_string()))?;
                        encode(value, Some(e), out).map_err(|e| e.at(k.to_string()))?;
                    }
                }
                _ => return Err(mismatch("an array of [key, value] pairs", v)),
            }
            out.push(0);
        }
        CType::Struct(fields) => {
            let J::Obj(m) = v else {
                return Err(mismatch("an object", v));
            };
            for (i, (name, fs)) in fields.iter().enumerate() {
                // JsonConverter writes the fields in schema order: try that first.
                let found = match m.get(i) {
                    Some((k, v)) if k == name => Some(v),
                    _ => m.iter().find(|(k, _)| k == name).map(|(_, v)| v),
                };
                encode(fs, found, out).map_err(|e| e.at(name.clone()))?;
            }
        }
    }
    Ok(())
}

/// A decimal number's unscaled value at `scale`, as big-endian two's complement in the
/// fewest bytes (Java's `BigInteger.toByteArray`).
fn decimal_bytes(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (
            &text[..i],
            text[i + 1..]
                .parse::<i64>()
                .map_err(|_| format!("`{text}` is not a decimal"))?,
        ),
        None => (text, 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|d| d - b'0').collect();
    // value = digits × 10^(exp − frac.len()); wanted: × 10^(−scale).
    let shift = exp - frac.len() as i64 + scale as i64;
    if shift >= 0 {
        digits.extend(std::iter::repeat_n(0, shift as usize));
    } else {
        let cut = (-shift) as usize;
        let keep = digits.len().saturating_sub(cut);
        if digits[keep..].iter().any(|d| *d != 0) {
            return Err(format!("`{text}` has more than {scale} decimal places"));
        }
        digits.truncate(keep);
    }
    let mut v: i128 = 0;
    for d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d as i128))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    if neg {
        v = -v;
    }
    let be = v.to_be_bytes();
    let mut start = 0;
    while start < 15
        && ((be[start] == 0 && be[start + 1] & 0x80 == 0)
            || (be[start] == 0xff && be[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    Ok(be[start..].to_vec())
}

// ---------------------------------------------------------------------------------------------
// The schema cache

/// The Avro schema text `AvroConverter` would register for a Connect schema given as
/// JsonConverter writes it (the value of `schema`).
pub fn avro_schema(connect_schema: &str) -> Result<String, ConnectJsonError> {
    compile(connect_schema.as_bytes()).map(|(_, text)| text)
}

fn compile(raw: &[u8]) -> Result<(CSchema, String), ConnectJsonError> {
    let mut p = Parser::new(raw);
    let j = p.value(0).map_err(ConnectJsonError::Json)?;
    p.end().map_err(ConnectJsonError::Json)?;
    if j == J::Null {
        return Err(ConnectJsonError::NullSchema);
    }
    let mut c = Compiler {
        names: HashMap::new(),
        unnamed: 0,
    };
    let mut text = String::new();
    let s = c
        .schema(&j, None, &mut text, 0)
        .map_err(ConnectJsonError::Schema)?;
    Ok((s, text))
}

struct Entry {
    reg: RegisteredSchema,
    schema: CSchema,
}

/// Transcodes JsonConverter documents into the Confluent wire format, and holds the
/// synthetic schemas it registered on the way.
#[derive(Default)]
pub struct ConnectJson {
    /// Index: id − [`FIRST_ID`].
    entries: Vec<Entry>,
    /// The xxh3 of a `schema` text as it came, with that text and its id.
    by_raw: HashMap<u128, (Box<[u8]>, u32)>,
    /// Avro schema text → id: different Connect texts of one schema share its id.
    by_avro: HashMap<String, u32>,
    /// The latest version per subject.
    versions: HashMap<String, u32>,
}

impl ConnectJson {
    pub fn new() -> Self {
        ConnectJson::default()
    }

    /// Transcodes the JsonConverter document `doc` of `subject` into `out` (cleared first):
    /// `0x00`, the big-endian synthetic id, the Avro datum. Returns the id.
    pub fn transcode(
        &mut self,
        doc: &[u8],
        subject: &str,
        out: &mut Vec<u8>,
    ) -> Result<u32, ConnectJsonError> {
        let (span, payload) = split_document(doc)?;
        let id = self.id_for(&doc[span], subject)?;
        out.clear();
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        let e = &self.entries[(id - FIRST_ID) as usize];
        encode(&e.schema, Some(&payload), out)
            .map_err(|e| ConnectJsonError::Payload(e.render()))?;
        Ok(id)
    }

    fn id_for(&mut self, raw: &[u8], subject: &str) -> Result<u32, ConnectJsonError> {
        let h = xxhash_rust::xxh3::xxh3_128(raw);
        let id = match self.by_raw.get(&h) {
            Some((text, id)) if **text == *raw => *id,
            _ => {
                let (schema, text) = compile(raw)?;
                let id = match self.by_avro.get(&text) {
                    Some(id) => *id,
                    None => {
                        let id = FIRST_ID
                            .checked_add(self.entries.len() as u32)
                            .filter(|id| *id <= LAST_ID)
                            .ok_or(ConnectJsonError::IdsExhausted)?;
                        self.by_avro.insert(text.clone(), id);
                        self.entries.push(Entry {
                            reg: RegisteredSchema {
                                id,
                                schema: text,
                                subjects: Vec::new(),
                            },
                            schema,
                        });
                        id
                    }
                };
                self.by_raw.entry(h).or_insert_with(|| (raw.into(), id));
                id
            }
        };
        let reg = &mut self.entries[(id - FIRST_ID) as usize].reg;
        if !reg.subjects.iter().any(|s| s.subject == subject) {
            let v = self.versions.entry(subject.to_string()).or_insert(0);
            *v += 1;
            reg.subjects.push(SubjectVersion {
                subject: subject.to_string(),
                version: *v,
            });
        }
        Ok(id)
    }

    /// The synthetic schema `id`, if it was registered.
    pub fn get(&self, id: u32) -> Option<&RegisteredSchema> {
        id.checked_sub(FIRST_ID)
            .and_then(|i| self.entries.get(i as usize))
            .map(|e| &e.reg)
    }

    /// Every synthetic schema registered so far.
    pub fn schemas(&self) -> impl Iterator<Item = &RegisteredSchema> {
        self.entries.iter().map(|e| &e.reg)
    }
}

/// A schema source answering the synthetic ids of `json` and passing every other id to `inner`.
pub struct WithConnectJson<'a, S: SchemaSource + ?Sized> {
    pub json: &'a ConnectJson,
    pub inner: &'a mut S,
}

impl<S: SchemaSource + ?Sized> SchemaSource for WithConnectJson<'_, S> {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
        match self.json.get(id) {
            Some(r) => Ok(r.clone()),
            None => self.inner.fetch(id),
        }
    }
}

#[cfg(test)]
mod tests;
