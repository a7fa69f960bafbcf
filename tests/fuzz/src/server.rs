//! The server's readers of client input: the filter parser and compiler,
//! the `sort`, `fields` and `expand` parameters, request bodies and tokens.
//! A bad input is a 4xx; a panic, a 5xx or SQL that SQLite refuses is a
//! finding.

use crate::{Input, Tenant, request};
use axum::http::{HeaderMap, HeaderValue, header};
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};
use strata_server::serve::api::body::record_body;
use strata_server::serve::auth::token::{peek, sign, unix_now, verify};
use strata_server::serve::errors::{ApiError, ApiResult};
use strata_server::serve::query::filter::{Sql, quote_ident};
use strata_server::serve::query::names::Scope;
use strata_server::serve::query::relations::expand;
use strata_server::serve::query::rules::{and_filter, select, sort_sql};
use strata_server::serve::records::fields::{Excerpt, Fields, excerpt};
use strata_server::serve::schema::Collection;

/// A client input must never be answered with a 5xx.
fn client_error(e: &ApiError, what: &str) {
    assert!(
        e.status().is_client_error(),
        "{what}: {} ({e:?})",
        e.status()
    );
}

/// `filter`: byte 0 picks the scope (bit 0: trusted, as a rule), the
/// caller (bit 1: user `u1`, else a guest) and the collection (bit 2:
/// `users`, else `posts`); the rest is the filter. It runs as the records
/// list runs it (`rules::and_filter`, then `COUNT(*)` and `select`).
pub fn filter(data: &[u8]) {
    let mut i = Input::new(data);
    let mode = i.u8();
    let text = String::from_utf8_lossy(i.rest());
    let scope = if mode & 1 == 0 {
        Scope::Client
    } else {
        Scope::Trusted
    };
    let req = request(mode & 2 != 0);
    Tenant::with(|t| {
        let c = if mode & 4 == 0 { &t.posts } else { &t.users };
        let mut w = Sql {
            text: "1".into(),
            params: vec![],
        };
        if let Err(e) = and_filter(&t.conn, c, &text, scope, &req, &mut w) {
            return client_error(&e, &format!("filter {text:?}"));
        }
        let run = || -> ApiResult<(i64, usize)> {
            let n: i64 = t
                .conn
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM {} WHERE {}",
                    quote_ident(&c.name),
                    w.text
                ))?
                .query_row(rusqlite::params_from_iter(w.params.iter()), |r| r.get(0))?;
            let recs = select(&t.conn, c, &w, " ORDER BY _rowid_")?;
            Ok((n, recs.len()))
        };
        match run() {
            Ok((n, got)) => assert_eq!(
                n as usize, got,
                "filter {text:?}: COUNT(*) and SELECT disagree ({})",
                w.text
            ),
            Err(e) => client_error(&e, &format!("filter {text:?} as SQL {:?}", w.text)),
        }
    });
}

/// The records of `c` with these ids (what `expand` fetches).
fn fetch_ids(
    conn: &rusqlite::Connection,
    c: &Collection,
    ids: &[String],
) -> ApiResult<Vec<Map<String, Value>>> {
    let w = Sql {
        text: format!("id IN ({})", vec!["?"; ids.len().max(1)].join(",")),
        params: if ids.is_empty() {
            vec![SqlValue::Null]
        } else {
            ids.iter().map(|i| SqlValue::Text(i.clone())).collect()
        },
    };
    select(conn, c, &w, "")
}

/// `sort`, `fields` and `expand`: byte 0 bit 0 is the trusted scope, then
/// three lines: the sort, the fields and the expand parameter, and the rest
/// for `:excerpt` (`fields::excerpt`). A sort that compiles orders every
/// row; `fields` only ever drops keys and shortens strings.
pub fn query_params(data: &[u8]) {
    let mut i = Input::new(data);
    let trusted = i.u8() & 1 != 0;
    let (sort, fields, spec) = (i.text(), i.text(), i.text());
    excerpt_of(i.rest());
    let scope = if trusted {
        Scope::Trusted
    } else {
        Scope::Client
    };
    Tenant::with(|t| {
        match sort_sql(&t.conn, &t.posts, &sort, scope) {
            Ok(order) => {
                let all = Sql {
                    text: "1".into(),
                    params: vec![],
                };
                match select(&t.conn, &t.posts, &all, &format!(" ORDER BY {order}")) {
                    Ok(recs) => assert_eq!(recs.len(), 4, "sort {sort:?}: {order}"),
                    Err(e) => client_error(&e, &format!("sort {sort:?} as SQL {order:?}")),
                }
            }
            Err(e) => client_error(&e, &format!("sort {sort:?}")),
        }
        let all = Sql {
            text: "1".into(),
            params: vec![],
        };
        let mut recs = select(&t.conn, &t.posts, &all, "").expect("select posts");
        let show = |_: &Collection, m: Map<String, Value>| Value::Object(m);
        if let Err(e) = expand(&t.conn, &t.posts, &mut recs, &spec, &fetch_ids, &show) {
            client_error(&e, &format!("expand {spec:?}"));
        }
        let Ok(fields) = Fields::parse(&fields) else {
            return;
        };
        let mut list = Value::Array(recs.into_iter().map(Value::Object).collect());
        let before = list.clone();
        fields.pick(&mut list);
        assert!(
            subset(&list, &before),
            "fields {fields:?} added to a record"
        );
    });
}

/// Whether `a` is `b` with keys taken out (and strings cut shorter).
fn subset(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| subset(v, w))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| subset(v, w))
        }
        (Value::String(a), Value::String(b)) => a.len() <= b.len() + 3 || a == b,
        (a, b) => a == b,
    }
}

/// The `:excerpt` modifier of `fields` on arbitrary HTML: byte 0 is the
/// maximum length and byte 1 bit 0 the ellipsis (run by `query_params`).
fn excerpt_of(data: &[u8]) {
    let mut i = Input::new(data);
    let max = 1 + i.u8() as usize;
    let ellipsis = i.u8() & 1 != 0;
    let html = String::from_utf8_lossy(i.rest());
    let e = Excerpt { max, ellipsis };
    let out = excerpt(&html, e);
    assert!(
        out.len() <= max + 3,
        "excerpt({max}) of {html:?} is {out:?}"
    );
}

/// A record body (`api/body.rs` `record_body`): byte 0 picks the content
/// type (0: multipart with the boundary on line 1, 1: JSON, 2: urlencoded,
/// 3: line 1 as the whole header), the rest is the body. An object or a
/// 4xx, never a panic or a 5xx.
pub fn multipart(data: &[u8]) {
    let mut i = Input::new(data);
    let kind = i.u8() % 4;
    let line = i.line();
    let body = axum::body::Bytes::copy_from_slice(i.rest());
    let ct = match kind {
        0 => [b"multipart/form-data; boundary=".as_slice(), line].concat(),
        1 => b"application/json".to_vec(),
        2 => b"application/x-www-form-urlencoded".to_vec(),
        _ => line.to_vec(),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(&ct) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Err(e) = record_body(&headers, Ok(body)) {
        client_error(&e, "record body");
    }
}

/// The JWT reader (`auth/token.rs`): two bytes pick a position, then three
/// lines: a token, a key and an id to sign. `peek` and `verify` never panic
/// on the token; whatever verifies re-signs to the same claims; a token
/// `sign` made verifies and peeks to its claims, and with one character
/// changed it either fails or still says exactly the same.
pub fn jwt(data: &[u8]) {
    let mut i = Input::new(data);
    let flip = i.u16() as usize;
    let (token, key, id) = (i.text(), i.text(), i.text());
    let _ = peek(&token);
    if let Some(claims) = verify(&token, &key) {
        let again = sign(&claims, &key).expect("sign what verified");
        assert_eq!(verify(&again, &key).as_ref(), Some(&claims));
    }
    let claims = json!({"id": id, "type": "auth", "exp": unix_now() + 3600});
    let tok = sign(&claims, &key).expect("sign");
    assert_eq!(verify(&tok, &key).as_ref(), Some(&claims), "{tok}");
    assert_eq!(peek(&tok).as_ref(), Some(&claims), "{tok}");
    let mut bytes = tok.into_bytes();
    let at = flip % bytes.len();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("a token is ASCII");
    if let Some(v) = verify(&tampered, &key) {
        assert_eq!(v, claims, "tampered token {tampered} verified");
    }
}
