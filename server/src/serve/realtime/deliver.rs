//! A record change as each subscriber sees it: for every subscription that
//! names the record (`coll/*` or `coll/ID`), the collection's list or view
//! rule is run for that subscriber (its bound auth, its options' headers
//! and query, `id = ?` plus its `filter`), then the record is serialized
//! with its `expand` and `fields`, as the records API would answer it.
//!
//! [`prepare`] runs inside the write's transaction, on the writer's
//! connection: after the write for a create or an update, before it for a
//! delete (the payload of a delete is the record as it was, as in
//! PocketBase). The messages go out only once the commit returns
//! ([`super::Hub::publish`]); a rolled-back write sends nothing. With no
//! client connected it costs one lock.

use super::{Client, Message};
use crate::serve::api::records::respond;
use crate::serve::errors::ApiResult;
use crate::serve::query::filter::Sql;
use crate::serve::query::rules::{Caller, and_filter, client_scope, rule_sql, select};
use crate::serve::schema::Collection;
use crate::serve::tenants::Tenant;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, json};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// A change's messages, each for one client, waiting for the commit.
#[derive(Default)]
pub struct Change {
    pub(super) messages: Vec<(Arc<Client>, Message)>,
}

impl Change {
    /// Add another change's messages after these (one write, many records).
    pub fn extend(&mut self, other: Change) {
        self.messages.extend(other.messages);
    }
}

/// The messages for a change to record `id` of `c`, read on `conn` (where
/// the record is as the event shows it). Errors of one subscriber (a rule
/// or filter that fails) skip that subscriber; the write goes on.
pub fn prepare(t: &Tenant, conn: &Connection, c: &Collection, action: Action, id: &str) -> Change {
    let mut change = Change::default();
    if t.realtime.is_empty() {
        return change;
    }
    for client in t.realtime.clients() {
        let (token, subs) = {
            let st = client.state.lock();
            let subs: Vec<_> = st
                .subs
                .iter()
                .filter(|s| s.matches(&c.name, &c.id, id))
                .cloned()
                .collect();
            (st.token.clone(), subs)
        };
        for sub in subs {
            match message(t, conn, c, action, id, token.as_deref(), &sub) {
                Ok(Some(msg)) => change.messages.push((client.clone(), msg)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(client = %client.id, topic = %sub.raw, error = %e, "realtime message skipped")
                }
            }
        }
    }
    change
}

/// One subscription's message, if its rule lets its client see the record.
fn message(
    t: &Tenant,
    conn: &Connection,
    c: &Collection,
    action: Action,
    id: &str,
    token: Option<&str>,
    sub: &super::topics::Subscription,
) -> ApiResult<Option<Message>> {
    let mut headers = HeaderMap::new();
    for (k, v) in &sub.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    headers.remove(header::AUTHORIZATION);
    if let Some(v) = token.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(header::AUTHORIZATION, v);
    }
    let call = Caller::new(t, conn, "GET", &headers, &sub.query, &Map::new())?;
    let rule = if sub.record.is_some() {
        &c.rules.view
    } else {
        &c.rules.list
    };
    let mut w = Sql {
        text: "id = ?".into(),
        params: vec![SqlValue::Text(id.into())],
    };
    match rule_sql(conn, c, rule, call.who.as_ref(), &call.request, &mut w) {
        Err(e) if e.status() == StatusCode::FORBIDDEN => return Ok(None),
        r => r?,
    }
    if let Some(f) = sub.query.get("filter") {
        let scope = client_scope(call.who.as_ref());
        and_filter(conn, c, f, scope, &call.request, &mut w)?;
    }
    let recs = select(conn, c, &w, "")?;
    if recs.is_empty() {
        return Ok(None);
    }
    let Some(record) = respond(conn, c, recs, &call, &sub.query)?.pop() else {
        return Ok(None);
    };
    Ok(Some(Message {
        name: sub.raw.clone(),
        data: json!({"action": action.as_str(), "record": record}).to_string(),
    }))
}
