//! Subscription strings as the SDK sends them: `coll/*` (every record, the
//! list rule decides), `coll/RECORD_ID` (one record, the view rule
//! decides), the collection by name or id, optionally followed by
//! `?options=<url-encoded JSON {"query": {...}, "headers": {...}}>`.
//! The query's `expand`, `fields` and `filter` apply to that subscription's
//! messages; its headers are `@request.headers.*` for its rule.

use serde_json::Value;
use std::collections::HashMap;

/// Subscriptions of one client at most (PocketBase's limit).
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Characters of one subscription string at most.
pub const MAX_LEN: usize = 2500;

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The string exactly as subscribed: the event name of its messages.
    pub raw: String,
    /// Collection name or id.
    pub collection: String,
    /// `None` for `*` (and the legacy bare collection topic).
    pub record: Option<String>,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
}

impl Subscription {
    /// A topic that is not a collection's (`""`, `/x`) parses but never
    /// matches a record; PocketBase accepts such strings too.
    pub fn parse(raw: &str) -> Subscription {
        let (topic, params) = raw.split_once('?').unwrap_or((raw, ""));
        let (collection, record) = match topic.split_once('/') {
            Some((c, "*")) => (c, None),
            Some((c, id)) => (c, Some(id.to_string())),
            None => (topic, None),
        };
        let mut sub = Subscription {
            raw: raw.to_string(),
            collection: collection.to_string(),
            record,
            query: HashMap::new(),
            headers: HashMap::new(),
        };
        // A query that does not decode has no options.
        let options = serde_urlencoded::from_str::<Vec<(String, String)>>(params)
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "options")
            .map(|(_, v)| v);
        if let Some(Ok(Value::Object(o))) = options.map(|s| serde_json::from_str::<Value>(&s)) {
            sub.query = strings(o.get("query"), false);
            sub.headers = strings(o.get("headers"), true);
        }
        sub
    }

    /// Whether a change to record `id` of collection (`name`, `cid`) is for
    /// this subscription.
    pub fn matches(&self, name: &str, cid: &str, id: &str) -> bool {
        (self.collection == name || self.collection == cid)
            && self.record.as_deref().is_none_or(|r| r == id)
    }
}

/// An options object's values as strings (JSON for non-strings); header
/// names lower-case, as `@request.headers.*` takes them.
fn strings(v: Option<&Value>, header: bool) -> HashMap<String, String> {
    let Some(Value::Object(o)) = v else {
        return HashMap::new();
    };
    o.iter()
        .map(|(k, v)| {
            let k = if header {
                k.to_ascii_lowercase()
            } else {
                k.clone()
            };
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topics_and_options() {
        let s = Subscription::parse("posts/*");
        assert_eq!((s.collection.as_str(), s.record), ("posts", None));
        let s = Subscription::parse("posts/abc");
        assert_eq!(s.record.as_deref(), Some("abc"));
        assert!(s.matches("posts", "pbc_1", "abc") && !s.matches("posts", "pbc_1", "abd"));
        let raw = "posts/*?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%22%2C%22n%22%3A1%7D%2C%22headers%22%3A%7B%22X-A%22%3A%22b%22%7D%7D";
        let s = Subscription::parse(raw);
        assert_eq!(s.raw, raw);
        assert_eq!(s.query.get("fields").map(String::as_str), Some("id"));
        assert_eq!(s.query.get("n").map(String::as_str), Some("1"));
        assert_eq!(s.headers.get("x-a").map(String::as_str), Some("b"));
        // Malformed input parses to something harmless.
        for raw in [
            "",
            "/",
            "?options=%7",
            "a/b?options=%ZZ",
            "%",
            "x?options=%E2%8",
        ] {
            let _ = Subscription::parse(raw);
        }
    }
}
