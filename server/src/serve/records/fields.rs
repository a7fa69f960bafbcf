//! The `fields` query parameter, as PocketBase reads it: a comma-separated
//! list of dot paths into the answer (`id,title,expand.author.name`), `*`
//! for every key at its level, and the `:excerpt(max, withEllipsis?)`
//! modifier, which turns an HTML string into plain text cut to `max`
//! bytes. Paths that name nothing are ignored; a malformed list or an
//! unknown modifier is the client's error.

use serde_json::{Map, Value};

/// Why a `fields` list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("unbalanced parentheses or quotes in fields")]
    Unbalanced,
    #[error("unknown fields modifier {0:?} (expected excerpt)")]
    UnknownModifier(String),
    #[error("excerpt expects (max, withEllipsis?) with max > 0")]
    ExcerptArgs,
}

/// `:excerpt(max, withEllipsis)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Excerpt {
    pub max: usize,
    pub ellipsis: bool,
}

/// A parsed `fields` list: each path with its modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields(Vec<(String, Option<Excerpt>)>);

/// Split at top-level commas (not inside parentheses or quotes).
fn split_top(raw: &str) -> Result<Vec<&str>, FieldsError> {
    let (mut out, mut depth, mut quote, mut start) = (Vec::new(), 0usize, None, 0);
    for (i, ch) in raw.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.checked_sub(1).ok_or(FieldsError::Unbalanced)?,
            (None, ',') if depth == 0 => {
                out.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 || quote.is_some() {
        return Err(FieldsError::Unbalanced);
    }
    out.push(&raw[start..]);
    Ok(out)
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['\'', '"', '`'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

fn modifier(raw: &str) -> Result<Excerpt, FieldsError> {
    let raw = raw.trim();
    let (name, args) = match raw.split_once('(') {
        Some((n, rest)) => (
            n.trim(),
            rest.strip_suffix(')').ok_or(FieldsError::Unbalanced)?,
        ),
        None => (raw, ""),
    };
    if name != "excerpt" {
        return Err(FieldsError::UnknownModifier(
            name.chars().take(100).collect(),
        ));
    }
    let args: Vec<&str> = if args.trim().is_empty() {
        vec![]
    } else {
        split_top(args)?.into_iter().map(unquote).collect()
    };
    let (max, ellipsis) = match args.as_slice() {
        [max] => (max, None),
        [max, e] => (max, Some(*e)),
        _ => return Err(FieldsError::ExcerptArgs),
    };
    let max = max
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|m| *m > 0)
        .ok_or(FieldsError::ExcerptArgs)?;
    let ellipsis = matches!(
        ellipsis.map(str::trim),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    );
    Ok(Excerpt { max, ellipsis })
}

impl Fields {
    pub fn parse(raw: &str) -> Result<Fields, FieldsError> {
        let mut out = Vec::new();
        for item in split_top(raw)? {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match item.split_once(':') {
                Some((path, m)) => out.push((path.trim().to_string(), Some(modifier(m)?))),
                None => out.push((item.to_string(), None)),
            }
        }
        Ok(Fields(out))
    }

    /// Cut `v` (a record, or a list of them) to the paths.
    pub fn pick(&self, v: &mut Value) {
        if self.0.is_empty() {
            return;
        }
        let paths: Vec<(&str, Option<Excerpt>)> =
            self.0.iter().map(|(p, m)| (p.as_str(), *m)).collect();
        pick_value(v, &paths);
    }
}

/// `path` names `key` itself (`""` left) or a path under it (the rest).
fn under<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    if path == key {
        return Some("");
    }
    path.strip_prefix(key)?.strip_prefix('.')
}

fn pick_value(v: &mut Value, paths: &[(&str, Option<Excerpt>)]) {
    match v {
        Value::Object(m) => pick_map(m, paths),
        // Lists of records (a multiple relation's expand); other arrays stay.
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            for item in items {
                if let Value::Object(m) = item {
                    pick_map(m, paths);
                }
            }
        }
        _ => {}
    }
}

fn pick_map(m: &mut Map<String, Value>, paths: &[(&str, Option<Excerpt>)]) {
    let star = paths.iter().find(|(p, _)| *p == "*").map(|(_, e)| *e);
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let mut rest: Vec<(&str, Option<Excerpt>)> = paths
            .iter()
            .filter_map(|(p, e)| under(p, &k).map(|r| (r, *e)))
            .collect();
        if rest.is_empty() {
            match star {
                // `*` keeps every key no other path names, with its modifier.
                Some(e) => rest.push(("", e)),
                None => {
                    m.remove(&k);
                    continue;
                }
            }
        }
        let Some(value) = m.get_mut(&k) else { continue };
        // The key itself is named: kept whole, modified if asked.
        if let Some((_, e)) = rest.iter().find(|(r, _)| r.is_empty()) {
            if let (Some(e), Value::String(s)) = (e, &*value) {
                *value = Value::String(excerpt(s, *e));
            }
            continue;
        }
        pick_value(value, &rest);
    }
}

/// Elements whose content is not text (scripts, forms, media).
const SKIPPED: &[&str] = &[
    "head", "style", "script", "iframe", "embed", "applet", "object", "svg", "img", "picture",
    "dialog", "template", "button", "form", "textarea", "input", "select", "option",
];
/// Elements that do not break a line (no space around them).
const INLINE: &[&str] = &[
    "a", "abbr", "acronym", "b", "bdo", "big", "br", "button", "cite", "code", "em", "i", "label",
    "q", "small", "span", "strong", "strike", "sub", "sup", "time",
];
/// Void elements: no closing tag, so nothing to skip to.
const VOID: &[&str] = &["embed", "img", "input"];

/// Plain text of an HTML string: tags out (with the content of [`SKIPPED`]
/// ones), block elements as spaces, whitespace collapsed, the common
/// entities decoded; then cut to `max` bytes (at a character boundary).
pub fn excerpt(html: &str, e: Excerpt) -> String {
    let mut text = String::new();
    let mut space = true; // as if preceded by a space: no leading one
    let push_space = |text: &mut String, space: &mut bool| {
        if !*space {
            text.push(' ');
            *space = true;
        }
    };
    let mut rest = html;
    while !rest.is_empty() && text.len() <= e.max + 2 {
        let Some(lt) = rest.find('<') else {
            push_text(&mut text, &mut space, rest);
            break;
        };
        push_text(&mut text, &mut space, &rest[..lt]);
        rest = &rest[lt..];
        let Some(gt) = rest.find('>') else {
            // `<` that opens no tag is text.
            push_text(&mut text, &mut space, rest);
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue; // comment, doctype
        }
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if !closing && SKIPPED.contains(&name.as_str()) {
            if !VOID.contains(&name.as_str()) && !tag.ends_with('/') {
                let close = format!("</{name}");
                rest = match rest.to_ascii_lowercase().find(&close) {
                    Some(at) => rest[at..].find('>').map_or("", |g| &rest[at + g + 1..]),
                    None => "",
                };
            }
            continue;
        }
        if !INLINE.contains(&name.as_str()) {
            push_space(&mut text, &mut space);
        }
    }
    let t = text.trim();
    if t.len() <= e.max {
        return t.to_string();
    }
    let mut cut = e.max;
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = t[..cut].trim_end().to_string();
    if e.ellipsis {
        out.push_str("...");
    }
    out
}

/// Text between tags: entities decoded, whitespace runs as one space.
fn push_text(text: &mut String, space: &mut bool, raw: &str) {
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        let (ch, len) = if c == '&' {
            entity(rest).unwrap_or(('&', 1))
        } else {
            (c, c.len_utf8())
        };
        rest = &rest[len..];
        if ch.is_whitespace() {
            if !*space {
                text.push(' ');
                *space = true;
            }
        } else {
            text.push(ch);
            *space = false;
        }
    }
}

/// `&amp;`, `&#39;`, `&#x27;` and the other common entities at the start of
/// `s`, with the bytes they take.
fn entity(s: &str) -> Option<(char, usize)> {
    // In bytes: `;` is ASCII, so its index is a character boundary.
    let end = s.bytes().take(12).position(|b| b == b';')?;
    let body = &s[1..end];
    let ch = match body {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => {
            let n = body.strip_prefix('#')?;
            let code = match n.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((ch, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pick(v: Value, f: &str) -> Value {
        let mut v = v;
        Fields::parse(f).unwrap().pick(&mut v);
        v
    }

    #[test]
    fn paths_stars_and_nested_expands() {
        let rec = json!({"id": "a", "title": "T", "n": 1,
            "expand": {"author": {"id": "u", "name": "N", "email": "e"},
                       "tags": [{"id": "t1", "name": "x"}, {"id": "t2", "name": "y"}]}});
        assert_eq!(
            pick(rec.clone(), "id,title"),
            json!({"id": "a", "title": "T"})
        );
        assert_eq!(
            pick(rec.clone(), "id, expand.author.name,expand.tags.id"),
            json!({"id": "a", "expand": {"author": {"name": "N"}, "tags": [{"id": "t1"}, {"id": "t2"}]}})
        );
        assert_eq!(pick(rec.clone(), "*"), rec);
        assert_eq!(pick(rec.clone(), "nosuch"), json!({}));
        // `*` with a nested path: that key is cut, the others kept whole.
        let v = pick(rec.clone(), "*,expand.author.id");
        assert_eq!(v["title"], "T");
        assert_eq!(v["expand"], json!({"author": {"id": "u"}}));
        // A path under a plain value keeps the value.
        assert_eq!(pick(rec, "title.x"), json!({"title": "T"}));
    }

    #[test]
    fn excerpts_of_html() {
        let rec = json!({"id": "a", "body": "<p>Hello   <b>big</b>\n world</p><script>x()</script><p>second &amp; last</p>", "n": 5});
        assert_eq!(
            pick(rec.clone(), "body:excerpt(100)"),
            json!({"body": "Hello big world second & last"})
        );
        assert_eq!(
            pick(rec.clone(), "body:excerpt(9,true)"),
            json!({"body": "Hello big..."})
        );
        // On `*`, every string gets it; other values stay.
        assert_eq!(
            pick(rec, "*:excerpt(5)"),
            json!({"id": "a", "body": "Hello", "n": 5})
        );
        let cut = excerpt(
            "ééé",
            Excerpt {
                max: 3,
                ellipsis: false,
            },
        );
        assert_eq!(cut, "é");
    }

    #[test]
    fn malformed_lists_are_refused() {
        for f in [
            "body:excerpt",
            "body:excerpt()",
            "body:excerpt(0)",
            "body:excerpt(-1)",
            "body:excerpt(x)",
            "body:excerpt(1,2,3)",
            "body:upper(1)",
            "body:excerpt(1",
            "a,(b",
            "a'",
        ] {
            assert!(Fields::parse(f).is_err(), "{f} accepted");
        }
        assert_eq!(Fields::parse(" , ").unwrap(), Fields(vec![]));
    }
}
