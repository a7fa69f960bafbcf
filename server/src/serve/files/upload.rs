//! Uploads: the file parts of a multipart record body, checked against
//! their field, stored before the record's write ([`stage`]), and a file
//! field's new value worked out from the body, its modifiers and the
//! record's current names ([`FileWrite::resolve`]).

use super::TenantFiles;
use super::names;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::schema::{Collection, Field, FieldType};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// One file part of a multipart body, as sent.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The part's name: a field, maybe with a modifier (`docs+`, `+docs`).
    pub key: String,
    /// The client's file name.
    pub original: String,
    pub data: Bytes,
}

/// How an upload joins its field's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `field`: the uploads are the new value (a single field's one file).
    Replace,
    /// `field+`: after the current names.
    Append,
    /// `+field`: before them.
    Prepend,
}

/// How many first bytes of a file its type is sniffed from (at upload and
/// at each download), as sniffing libraries read a head, not the file.
pub const SNIFF: usize = 8 << 10;

/// The type of a file from its first [`SNIFF`] bytes (a MIME type and the
/// usual extension, with its dot), as PocketBase sniffs it: magic numbers
/// first, then text (JSON, HTML, SVG or plain UTF-8).
pub fn detect(data: &[u8]) -> (&'static str, String) {
    let head = &data[..data.len().min(SNIFF)];
    let cut = head.len() < data.len();
    if let Some(t) = infer::get(head) {
        let mime = match t.mime_type() {
            "text/html" => "text/html; charset=utf-8",
            "text/xml" => "text/xml; charset=utf-8",
            m => m,
        };
        return (mime, format!(".{}", t.extension()));
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A character cut at the head's end is still text.
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return ("application/octet-stream", String::new()),
    };
    let start = text.trim_start();
    let lower = start
        .get(..256.min(start.len()))
        .unwrap_or("")
        .to_ascii_lowercase();
    let json = (lower.starts_with('{') || lower.starts_with('['))
        && match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => true,
            // A head that is valid JSON so far.
            Err(e) => cut && e.is_eof(),
        };
    if json {
        ("application/json", ".json".into())
    } else if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        ("text/html; charset=utf-8", ".html".into())
    } else if lower.starts_with("<svg") || (lower.starts_with("<?xml") && lower.contains("<svg")) {
        ("image/svg+xml", ".svg".into())
    } else {
        ("text/plain; charset=utf-8", ".txt".into())
    }
}

/// Whether `mime` (maybe with parameters) is one of `allowed`.
fn mime_allowed(mime: &str, allowed: &[String]) -> bool {
    let essence = mime.split(';').next().unwrap_or("").trim();
    allowed.iter().any(|a| {
        let a = a.split(';').next().unwrap_or("").trim();
        a.eq_ignore_ascii_case(essence)
            || (a == "image/jpg" && essence == "image/jpeg")
            || (a == "image/jpeg" && essence == "image/jpg")
    })
}

fn err(code: &str, msg: String) -> Value {
    json!({"code": code, "message": msg})
}

/// A field name and how its uploads join it.
fn split_key(key: &str) -> (&str, Place) {
    if let Some(f) = key.strip_suffix('+') {
        (f, Place::Append)
    } else if let Some(f) = key.strip_prefix('+') {
        (f, Place::Prepend)
    } else {
        (key, Place::Replace)
    }
}

/// The uploads of one write, stored in the bucket under their final names
/// before the record's transaction.
#[derive(Debug, Default)]
pub struct FileWrite {
    /// Per field: the stored names, and how they join the field.
    staged: HashMap<String, Vec<(Place, String)>>,
    /// Every key put, to discard if the write fails.
    pub put: Vec<String>,
}

/// Check `uploads` against the file fields of `c` and put them in the
/// bucket under record `record_id`'s folder. A rejected upload is a 400
/// naming its field, with nothing stored.
pub async fn stage(
    files: &TenantFiles,
    c: &Collection,
    record_id: &str,
    uploads: Vec<Upload>,
    create: bool,
) -> ApiResult<FileWrite> {
    let mut errors = Map::new();
    let mut planned: Vec<(String, Place, String, Bytes)> = Vec::new();
    for u in uploads {
        let (name, place) = split_key(&u.key);
        let Some(f) = c.field(name).filter(|f| f.kind == FieldType::File) else {
            // PocketBase ignores parts that are no file field.
            continue;
        };
        let (mime, ext) = detect(&u.data);
        let stored = names::stored_name(&u.original, &ext);
        if let Some(e) = check(f, &u, mime, &stored) {
            errors.entry(f.name.clone()).or_insert(e);
            continue;
        }
        if f.max_select <= 1 {
            // A single file field keeps the last file sent.
            planned.retain(|(field, ..)| *field != f.name);
        }
        planned.push((f.name.clone(), place, stored, u.data));
    }
    // More uploads than a field holds fail whatever the record has: refused
    // before anything is put.
    for f in c
        .fields
        .iter()
        .filter(|f| f.kind == FieldType::File && f.max_select > 1)
    {
        let n = planned
            .iter()
            .filter(|(field, ..)| *field == f.name)
            .count();
        if n > f.max_select as usize {
            errors
                .entry(f.name.clone())
                .or_insert_with(|| too_many(f.max_select as usize));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(
            crate::serve::records::values::failed(create),
            Value::Object(errors),
        ));
    }
    let mut out = FileWrite::default();
    for (field, place, stored, data) in planned {
        let key = files.key(&c.id, record_id, &stored);
        if let Err(e) = files.put(key.clone(), data).await {
            files.discard_later(std::mem::take(&mut out.put));
            return Err(e);
        }
        out.put.push(key);
        out.staged.entry(field).or_default().push((place, stored));
    }
    Ok(out)
}

/// Why one upload (of type `mime`, to be stored as `stored`) cannot go in
/// field `f`, if it cannot; PocketBase's errors word for word.
fn check(f: &Field, u: &Upload, mime: &str, stored: &str) -> Option<Value> {
    let max = f.max_file_size();
    if u.data.len() as u64 > max {
        return Some(json!({
            "code": "validation_file_size_limit",
            "message": format!(
                "Failed to upload {} - the maximum allowed file size is {max} bytes.",
                u.original
            ),
            "params": {"file": u.original, "maxSize": max},
        }));
    }
    if !f.mime_types.is_empty() && !mime_allowed(mime, &f.mime_types) {
        return Some(err(
            "validation_invalid_mime_type",
            format!(
                "{stored:?} mime type must be one of: {}.",
                f.mime_types.join(", ")
            ),
        ));
    }
    None
}

fn too_many(max: usize) -> Value {
    json!({
        "code": "validation_too_many_files",
        "message": format!("The maximum allowed files is {max}."),
        "params": {"maxSelect": max},
    })
}

/// The names a submitted value gives (`null`, `""` and `[]` none; other
/// scalars as their text, which then names no file).
fn names_in(v: &Value) -> Vec<String> {
    let one = |x: &Value| match x {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    match v {
        Value::Array(a) => a.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

impl FileWrite {
    /// Whether the write touches file field `f` (a value, a modifier or an
    /// upload).
    pub fn touches(&self, f: &Field, body: &Map<String, Value>) -> bool {
        self.staged.contains_key(&f.name)
            || body.contains_key(&f.name)
            || body.contains_key(&format!("{}-", f.name))
    }

    /// The new names of file field `f`: the body's value (names the record
    /// already holds; others are dropped), or the current names, less the
    /// body's `f-` names, with the uploads replacing, appended or
    /// prepended; and the names that leave the record. An error is the
    /// field's validation error.
    pub fn resolve(
        &self,
        f: &Field,
        body: &Map<String, Value>,
        current: &[String],
    ) -> Result<(Vec<String>, Vec<String>), Value> {
        let mut names: Vec<String> = match body.get(&f.name) {
            Some(v) => {
                let given = names_in(v);
                // Only files the record holds can be named; new ones are uploaded.
                let invalid: Vec<&String> = given.iter().filter(|n| !current.contains(n)).collect();
                if !invalid.is_empty() {
                    let list: Vec<&str> = invalid.iter().map(|s| s.as_str()).collect();
                    return Err(json!({
                        "code": "validation_invalid_file",
                        "message": format!("Invalid new files: [{}].", list.join(" ")),
                        "params": {"invalidFiles": list},
                    }));
                }
                given
            }
            None => current.to_vec(),
        };
        if let Some(v) = body.get(&format!("{}-", f.name)) {
            let gone = names_in(v);
            names.retain(|n| !gone.contains(n));
        }
        let staged = self.staged.get(&f.name).map_or(&[][..], Vec::as_slice);
        if staged.iter().any(|(p, _)| *p == Place::Replace) && !body.contains_key(&f.name) {
            names.clear();
        }
        let mut front = Vec::new();
        for (place, n) in staged {
            match place {
                Place::Prepend => front.push(n.clone()),
                Place::Replace | Place::Append => names.push(n.clone()),
            }
        }
        front.extend(names);
        let mut names = front;
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        let max = f.max_select.max(1) as usize;
        if names.len() > max {
            if max == 1 && !staged.is_empty() {
                // A single file field keeps its newest upload.
                names = vec![names[names.len() - 1].clone()];
            } else {
                return Err(too_many(max));
            }
        }
        let removed = current
            .iter()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        Ok((names, removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(max: u32) -> Field {
        Field {
            max_select: max,
            ..Field::new("docs", FieldType::File)
        }
    }

    fn write(staged: &[(&str, &str)]) -> FileWrite {
        let mut w = FileWrite::default();
        for (key, name) in staged {
            let (f, place) = split_key(key);
            w.staged
                .entry(f.to_string())
                .or_default()
                .push((place, name.to_string()));
        }
        w
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn cur(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn uploads_and_modifiers_make_the_new_names() {
        let f = field(5);
        let have = cur(&["a", "b"]);
        // Append, prepend.
        let (n, gone) = write(&[("docs+", "c"), ("+docs", "z")])
            .resolve(&f, &Map::new(), &have)
            .unwrap();
        assert_eq!((n, gone), (cur(&["z", "a", "b", "c"]), cur(&[])));
        // Plain key: the uploads replace.
        let (n, gone) = write(&[("docs", "c")])
            .resolve(&f, &Map::new(), &have)
            .unwrap();
        assert_eq!((n, gone), (cur(&["c"]), cur(&["a", "b"])));
        // Remove by name; unknown names change nothing.
        let (n, gone) = write(&[])
            .resolve(&f, &body(json!({"docs-": ["a", "nope"]})), &have)
            .unwrap();
        assert_eq!((n, gone), (cur(&["b"]), cur(&["a"])));
        // A value names only files the record has.
        let e = write(&[])
            .resolve(&f, &body(json!({"docs": ["b", "evil.png", 3]})), &have)
            .unwrap_err();
        assert_eq!(e["message"], "Invalid new files: [evil.png 3].");
        assert_eq!(e["params"]["invalidFiles"], json!(["evil.png", "3"]));
        // Reordered, one dropped; kept names and a plain-key upload together.
        let (n, gone) = write(&[])
            .resolve(&f, &body(json!({"docs": ["b"]})), &have)
            .unwrap();
        assert_eq!((n, gone), (cur(&["b"]), cur(&["a"])));
        let (n, _) = write(&[("docs", "c")])
            .resolve(&f, &body(json!({"docs": ["b"]})), &have)
            .unwrap();
        assert_eq!(n, cur(&["b", "c"]));
        // Cleared.
        let (n, gone) = write(&[])
            .resolve(&f, &body(json!({"docs": []})), &have)
            .unwrap();
        assert_eq!((n, gone), (cur(&[]), have.clone()));
        // Too many.
        let e = write(&[
            ("docs+", "c"),
            ("docs+", "d"),
            ("docs+", "e"),
            ("docs+", "f"),
        ])
        .resolve(&f, &Map::new(), &have)
        .unwrap_err();
        assert_eq!(e["code"], "validation_too_many_files");
        assert_eq!(e["message"], "The maximum allowed files is 5.");
        // A single field: the new upload replaces the old.
        let (n, gone) = write(&[("docs", "new")])
            .resolve(&field(1), &Map::new(), &cur(&["old"]))
            .unwrap();
        assert_eq!((n, gone), (cur(&["new"]), cur(&["old"])));
        assert!(
            write(&[])
                .resolve(&f, &body(json!({"docs": 3})), &have)
                .is_err()
        );
        // `null` and "" clear.
        let (n, _) = write(&[])
            .resolve(&field(1), &body(json!({"docs": null})), &have)
            .unwrap();
        assert!(n.is_empty());
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n0000").0, "image/png");
        assert_eq!(detect(b"hello").0, "text/plain; charset=utf-8");
        assert_eq!(detect(b"").1, ".txt");
        assert_eq!(detect(br#"{"a": 1}"#).1, ".json");
        assert_eq!(detect(b"<!DOCTYPE html><p>x").1, ".html");
        // Only the head is read: long text, long JSON, a character cut at
        // the head's end.
        let mut long = format!("a{}", "é".repeat(SNIFF));
        assert_eq!(detect(long.as_bytes()).1, ".txt");
        long = format!("[{}1]", "1,".repeat(SNIFF));
        assert_eq!(detect(long.as_bytes()).1, ".json");
        assert_eq!(detect(b"{\"a\": }").1, ".txt");
        assert_eq!(detect(&[0xff, 0x00, 0xfe]).0, "application/octet-stream");
        assert!(mime_allowed(
            "text/plain; charset=utf-8",
            &["text/plain".into()]
        ));
        assert!(!mime_allowed("text/plain", &["image/png".into()]));
    }
}
