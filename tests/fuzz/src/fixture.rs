//! What the server targets share: a tenant database in memory, shaped by
//! strata's own schema code, with a few collections and rows.

use rusqlite::Connection;
use serde_json::{Value, json};
use strata_server::serve::schema::{self, Collection, Field, Rules};

/// A tenant's tables with its default `users` (auth, `name`, `avatar`) and
/// `posts` (every kind of
/// field a filter can name: text, number, bool, json, date, a single and a
/// multiple select, a single and a multiple relation to `users`, a hidden
/// field), and a few rows in each.
pub struct Tenant {
    pub conn: Connection,
    pub users: Collection,
    pub posts: Collection,
}

fn fields(v: Value) -> Vec<Field> {
    serde_json::from_value(v).expect("fields")
}

impl Tenant {
    pub fn new() -> Tenant {
        let mut conn = Connection::open_in_memory().expect("sqlite");
        schema::bootstrap_data(&mut conn, "root@example.com", "x").expect("bootstrap");
        // The default `users` a new tenant has (name, avatar).
        let users = schema::find_collection(&conn, "users").expect("users");
        let posts = Collection::build(
            "posts",
            "base",
            fields(json!([
                {"name": "title", "type": "text"},
                {"name": "n", "type": "number"},
                {"name": "done", "type": "bool"},
                {"name": "meta", "type": "json"},
                {"name": "when", "type": "date"},
                {"name": "kind", "type": "select", "values": ["a", "b"], "maxSelect": 1},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "author", "type": "relation", "collectionId": users.id, "maxSelect": 1},
                {"name": "readers", "type": "relation", "collectionId": users.id, "maxSelect": 5},
                {"name": "secret", "type": "text", "hidden": true},
            ])),
            Rules::default(),
        );
        posts.create_table(&conn).expect("posts table");
        posts.insert_meta(&conn).expect("posts meta");
        conn.execute_batch(
            r#"INSERT INTO users (id, password, tokenKey, email, name) VALUES
                 ('u1', 'x', 'k1', 'a@example.com', 'Ann'),
                 ('u2', 'x', 'k2', 'b@example.com', 'Bob');
               INSERT INTO posts (id, title, n, done, meta, "when", kind, tags, author, readers, secret) VALUES
                 ('p1', 'alpha', 1, 1, '{"a":[1,2]}', '2024-01-01 00:00:00.000Z', 'a', '["a","b"]', 'u1', '["u1","u2"]', 's'),
                 ('p2', 'beta', 2.5, 0, '"x"', '', 'b', '["c"]', 'u2', '["u2"]', ''),
                 ('p3', '', 0, 0, NULL, '', '', '[]', '', '[]', ''),
                 ('p4', '%_\', -3, 1, '[1,"a",null]', '', '', '["a"]', 'nope', '["nope"]', '');"#,
        )
        .expect("rows");
        Tenant { conn, users, posts }
    }

    /// Run `f` with this thread's tenant (made on first use: a connection
    /// is not `Sync`, and the targets only read it).
    pub fn with<R>(f: impl FnOnce(&Tenant) -> R) -> R {
        thread_local! {
            static T: Tenant = Tenant::new();
        }
        T.with(f)
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::new()
    }
}

/// `@request.*` for a guest or for user `u1`.
pub fn request(auth: bool) -> Value {
    json!({
        "auth": if auth { json!({"id": "u1", "email": "a@example.com", "name": "Ann", "collectionName": "users"}) } else { Value::Null },
        "body": {"title": "T", "n": 2, "tags": ["a", "b"], "nested": {"x": [1]}},
        "query": {"q": "x"},
        "headers": {"user_agent": "fuzz"},
        "method": "GET",
        "context": "default",
    })
}
