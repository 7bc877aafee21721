//! Connect schemas compiled for encoding payloads, and the Avro schema text `AvroData` derives
//! from them.

use std::borrow::Cow;
use std::collections::HashMap;

use super::base64::b64_encode;
use super::json::{J, MAX_DEPTH, quote};
use super::payload::encode_base;

/// A Connect schema compiled for encoding payloads.
#[derive(Debug, Clone)]
pub(super) struct CSchema {
    pub(super) ty: CType,
    /// Optional: the index of the null branch of its Avro union (`["null", T]`, or
    /// `[T, "null"]` when it has a default).
    pub(super) null_index: Option<u8>,
    /// The default's datum, written for a null of a required value (as JsonConverter reads it).
    pub(super) default: Option<Box<[u8]>>,
}

#[derive(Debug, Clone)]
pub(super) enum CType {
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

pub(super) const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
pub(super) const DATE: &str = "org.apache.kafka.connect.data.Date";
pub(super) const TIME: &str = "org.apache.kafka.connect.data.Time";
pub(super) const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
/// The namespace of the records `AvroData` names itself.
pub(super) const CONNECT_NS: &str = "io.confluent.connect.avro";

/// Derives the Avro schema text as `AvroData` does (`connect.meta.data=true`, the default).
pub(super) struct Compiler<'s, 'a> {
    /// Records defined so far, by full name, with the Connect schema they came from.
    pub(super) names: HashMap<String, &'s J<'a>>,
    pub(super) unnamed: u32,
}

pub(super) fn split_name(full: &str) -> (Option<&str>, &str) {
    match full.rsplit_once('.') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, full),
    }
}

/// A Connect struct as it defines an Avro record: without where it is used.
pub(super) fn same_struct(a: &J<'_>, b: &J<'_>) -> bool {
    let keep = |e: &&(Cow<'_, str>, J<'_>)| e.0 != "field" && e.0 != "optional";
    match (a, b) {
        (J::Obj(x), J::Obj(y)) => x.iter().filter(keep).eq(y.iter().filter(keep)),
        _ => false,
    }
}

impl<'s, 'a> Compiler<'s, 'a> {
    /// Compiles `s` and writes its Avro type into `out`; `space` is the enclosing namespace.
    pub(super) fn schema(
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
    pub(super) fn struct_type(
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
    pub(super) fn field(
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
pub(super) fn write_name(out: &mut String, name: &str, ns: Option<&str>, space: Option<&str>) {
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
pub(super) fn default_bytes(ty: &CType, d: &J<'_>) -> Result<Vec<u8>, String> {
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
pub(super) fn connect_default(ty: &CType, d: &J<'_>) -> Result<String, String> {
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
pub(super) fn avro_default(ty: &CType, d: &J<'_>) -> Result<String, String> {
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
