//! PocketBase's conventions in `data.db`: the `_collections` and `_params`
//! tables, one table per collection, 15-character ids, `created`/`updated`
//! as `YYYY-MM-DD HH:MM:SS.mmmZ` strings; and `_logs` in `auxiliary.db`.

use super::errors::{ApiError, ApiResult};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::SystemTime;

/// PocketBase's fixed id of the `_superusers` collection.
pub const SUPERUSERS_ID: &str = "pbc_3142635823";
pub const SUPERUSERS: &str = "_superusers";

pub const DATA_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS _collections (
    id TEXT PRIMARY KEY NOT NULL,
    system BOOLEAN DEFAULT FALSE NOT NULL,
    type TEXT DEFAULT 'base' NOT NULL,
    name TEXT UNIQUE NOT NULL,
    fields JSON DEFAULT '[]' NOT NULL,
    indexes JSON DEFAULT '[]' NOT NULL,
    listRule TEXT DEFAULT NULL,
    viewRule TEXT DEFAULT NULL,
    createRule TEXT DEFAULT NULL,
    updateRule TEXT DEFAULT NULL,
    deleteRule TEXT DEFAULT NULL,
    options JSON DEFAULT '{}' NOT NULL,
    created TEXT DEFAULT '' NOT NULL,
    updated TEXT DEFAULT '' NOT NULL
);
CREATE TABLE IF NOT EXISTS _params (
    id TEXT PRIMARY KEY NOT NULL,
    value JSON DEFAULT NULL,
    created TEXT DEFAULT '' NOT NULL,
    updated TEXT DEFAULT '' NOT NULL
);
"#;

pub const AUX_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS _logs (
    id TEXT PRIMARY KEY NOT NULL,
    level INTEGER DEFAULT 0 NOT NULL,
    message TEXT DEFAULT '' NOT NULL,
    data JSON DEFAULT '{}' NOT NULL,
    created TEXT DEFAULT '' NOT NULL,
    updated TEXT DEFAULT '' NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_logs_created ON _logs (created);
"#;

/// PocketBase's date format, UTC with milliseconds.
pub fn now() -> String {
    format_time(SystemTime::now())
}

pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replacen('T', " ", 1)
}

/// `@todayStart` and `@todayEnd` (UTC).
pub fn today_bounds() -> (String, String) {
    let day = now()[..10].to_string();
    (
        format!("{day} 00:00:00.000Z"),
        format!("{day} 23:59:59.999Z"),
    )
}

/// A PocketBase record id: 15 characters of `[a-z0-9]`.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..15)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The strings a stored select, relation or file value holds: one for a
/// non-empty string, each non-empty string of an array, none otherwise.
pub fn strings_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

pub fn valid_id(id: &str) -> bool {
    id.len() == 15
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A random secret (for JWT signing and token keys).
pub fn new_secret() -> String {
    (0..3).map(|_| new_id()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Number,
    Bool,
    Json,
    Date,
    Email,
    Password,
    Autodate,
    /// One or more of a fixed list of values.
    Select,
    /// Ids of records of another collection.
    Relation,
    /// Names of files kept in the bucket under the record's folder
    /// (see `serve::files`).
    File,
    /// A URL, maybe limited to some domains.
    Url,
    /// Rich text (HTML), limited in bytes by `maxSize`.
    Editor,
    /// A point on Earth, stored as `{"lon": x, "lat": y}` (0, 0 when unset).
    #[serde(rename = "geoPoint")]
    GeoPoint,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Field {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(
        default,
        rename = "primaryKey",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub primary_key: bool,
    /// `select`: the allowed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// `select` and `relation`: above 1 the field holds a json array.
    #[serde(default, rename = "maxSelect", skip_serializing_if = "is_zero")]
    pub max_select: u32,
    /// `relation`: the id of the collection it points to.
    #[serde(
        default,
        rename = "collectionId",
        skip_serializing_if = "String::is_empty"
    )]
    pub collection_id: String,
    /// `relation`: delete this record when the record it points to is deleted.
    #[serde(
        default,
        rename = "cascadeDelete",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub cascade_delete: bool,
    /// `file`: the largest upload in bytes (0: PocketBase's default, 5 MiB).
    #[serde(default, rename = "maxSize", skip_serializing_if = "is_zero_u64")]
    pub max_size: u64,
    /// `file`: the types an upload may have, detected from its bytes
    /// (empty: any).
    #[serde(default, rename = "mimeTypes", skip_serializing_if = "Vec::is_empty")]
    pub mime_types: Vec<String>,
    /// `file`: the thumb sizes a client may ask for (`100x100`, `0x50`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thumbs: Vec<String>,
    /// `file`: served only with a file token whose holder may view the record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// `text`: the fewest and most characters of a non-empty value (most:
    /// 5000 when unset); `number`: the smallest and largest non-zero value;
    /// `date`: the earliest and latest date (PocketBase's date strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// `text`: a regular expression a non-empty value must match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pattern: String,
    /// `text`: a regular expression whose random match fills the field on
    /// create when the client leaves it empty.
    #[serde(
        default,
        rename = "autogeneratePattern",
        skip_serializing_if = "String::is_empty"
    )]
    pub autogenerate_pattern: String,
    /// `number`: whole numbers only.
    #[serde(
        default,
        rename = "onlyInt",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub only_int: bool,
    /// `url` and `email`: the only domains allowed, or those refused.
    #[serde(default, rename = "onlyDomains", skip_serializing_if = "Vec::is_empty")]
    pub only_domains: Vec<String>,
    #[serde(
        default,
        rename = "exceptDomains",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub except_domains: Vec<String>,
    /// `autodate`: set to now when the record is created, and when it is
    /// updated. Collections stored before strata kept these have neither;
    /// then `created` stamps on create and `updated` on both
    /// ([`Field::stamps`]), as they always did.
    #[serde(default, rename = "onCreate", skip_serializing_if = "Option::is_none")]
    pub on_create: Option<bool>,
    #[serde(default, rename = "onUpdate", skip_serializing_if = "Option::is_none")]
    pub on_update: Option<bool>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// PocketBase's largest upload of a `file` field with no `maxSize`.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5 << 20;

impl Field {
    /// A select or relation field that holds several values (a json array).
    pub fn multiple(&self) -> bool {
        matches!(
            self.kind,
            FieldType::Select | FieldType::Relation | FieldType::File
        ) && self.max_select > 1
    }
    /// A `file` field's largest upload in bytes.
    pub fn max_file_size(&self) -> u64 {
        if self.max_size == 0 {
            DEFAULT_MAX_FILE_SIZE
        } else {
            self.max_size
        }
    }
    /// An `autodate` field as PocketBase's default collections have them.
    pub(crate) fn autodate(name: &str, on_create: bool, on_update: bool) -> Field {
        Field {
            id: format!("autodate{name}"),
            on_create: Some(on_create),
            on_update: Some(on_update),
            ..Field::new(name, FieldType::Autodate)
        }
    }
    /// Does this `autodate` field take the time of a create (`update`
    /// false) or of an update (see `on_create`)?
    pub fn stamps(&self, update: bool) -> bool {
        if self.kind != FieldType::Autodate {
            return false;
        }
        let by_name = |n: &str| self.name == n;
        if update {
            self.on_update.unwrap_or(by_name("updated"))
        } else {
            self.on_create
                .unwrap_or(by_name("created") || by_name("updated"))
        }
    }
    /// A system field (`system`) of `kind`, with an id from both.
    pub(crate) fn new(name: &str, kind: FieldType) -> Field {
        Field {
            id: format!("{}{}", kind_tag(kind), name),
            name: name.into(),
            kind,
            required: false,
            system: true,
            hidden: false,
            primary_key: false,
            values: vec![],
            max_select: 0,
            collection_id: String::new(),
            cascade_delete: false,
            max_size: 0,
            mime_types: vec![],
            thumbs: vec![],
            protected: false,
            min: None,
            max: None,
            pattern: String::new(),
            autogenerate_pattern: String::new(),
            only_int: false,
            only_domains: vec![],
            except_domains: vec![],
            on_create: None,
            on_update: None,
        }
    }
    /// `min` as a number (text, number fields).
    pub fn min_num(&self) -> Option<f64> {
        self.min.as_ref().and_then(Value::as_f64)
    }
    pub fn max_num(&self) -> Option<f64> {
        self.max.as_ref().and_then(Value::as_f64)
    }
    /// The column definition (CREATE TABLE / ALTER TABLE ADD COLUMN).
    pub fn column(&self) -> String {
        let ty = match self.kind {
            _ if self.multiple() => "JSON DEFAULT '[]' NOT NULL",
            FieldType::Number => "NUMERIC DEFAULT 0 NOT NULL",
            FieldType::Bool => "BOOLEAN DEFAULT FALSE NOT NULL",
            FieldType::Json => "JSON DEFAULT NULL",
            FieldType::GeoPoint => r#"JSON DEFAULT '{"lon":0,"lat":0}' NOT NULL"#,
            _ => "TEXT DEFAULT '' NOT NULL",
        };
        format!(
            "{} {ty}",
            crate::serve::query::filter::quote_ident(&self.name)
        )
    }
}

fn kind_tag(k: FieldType) -> &'static str {
    match k {
        FieldType::Text => "text",
        FieldType::Number => "number",
        FieldType::Bool => "bool",
        FieldType::Json => "json",
        FieldType::Date => "date",
        FieldType::Email => "email",
        FieldType::Password => "password",
        FieldType::Autodate => "autodate",
        FieldType::Select => "select",
        FieldType::Relation => "relation",
        FieldType::File => "file",
        FieldType::Url => "url",
        FieldType::Editor => "editor",
        FieldType::GeoPoint => "geoPoint",
    }
}

/// The five API rules: `None` = superusers only, `Some("")` = everyone,
/// otherwise a filter the record must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rules {
    #[serde(rename = "listRule", default)]
    pub list: Option<String>,
    #[serde(rename = "viewRule", default)]
    pub view: Option<String>,
    #[serde(rename = "createRule", default)]
    pub create: Option<String>,
    #[serde(rename = "updateRule", default)]
    pub update: Option<String>,
    #[serde(rename = "deleteRule", default)]
    pub delete: Option<String>,
    /// Auth collections: who may set another record's `verified`, `email`
    /// and password without its old password (kept in `options`).
    #[serde(rename = "manageRule", default)]
    pub manage: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Collection {
    pub id: String,
    pub name: String,
    /// "base" or "auth".
    pub kind: String,
    pub system: bool,
    pub fields: Vec<Field>,
    pub indexes: Vec<String>,
    pub rules: Rules,
    pub created: String,
    pub updated: String,
}

impl Collection {
    pub fn is_auth(&self) -> bool {
        self.kind == "auth"
    }
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
    /// A field a filter or sort may name: not a password, not hidden.
    pub fn visible_field(&self, name: &str) -> Option<&Field> {
        self.field(name)
            .filter(|f| f.kind != FieldType::Password && !f.hidden)
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "system": self.system,
            "fields": self.fields,
            "indexes": self.indexes,
            "listRule": self.rules.list,
            "viewRule": self.rules.view,
            "createRule": self.rules.create,
            "updateRule": self.rules.update,
            "deleteRule": self.rules.delete,
            "created": self.created,
            "updated": self.updated,
        });
        if self.is_auth() {
            v["manageRule"] = json!(self.rules.manage);
        }
        v
    }

    /// A new collection with PocketBase's system fields around `user_fields`.
    pub fn build(name: &str, kind: &str, user_fields: Vec<Field>, rules: Rules) -> Collection {
        let mut fields = vec![Field {
            primary_key: true,
            required: true,
            ..Field::new("id", FieldType::Text)
        }];
        if kind == "auth" {
            fields.push(Field {
                hidden: true,
                required: true,
                ..Field::new("password", FieldType::Password)
            });
            fields.push(Field {
                hidden: true,
                required: true,
                ..Field::new("tokenKey", FieldType::Text)
            });
            fields.push(Field {
                required: true,
                ..Field::new("email", FieldType::Email)
            });
            fields.push(Field::new("emailVisibility", FieldType::Bool));
            fields.push(Field::new("verified", FieldType::Bool));
        }
        // No `created`/`updated`: since PocketBase 0.23 a collection has
        // autodate fields only where they are declared.
        fields.extend(user_fields);
        let t = now();
        Collection {
            id: if name == SUPERUSERS {
                SUPERUSERS_ID.into()
            } else {
                format!(
                    "pbc_{}",
                    rand::rng().random_range(1_000_000_000u64..9_999_999_999)
                )
            },
            name: name.into(),
            kind: kind.into(),
            system: name.starts_with('_'),
            fields,
            indexes: vec![],
            rules,
            created: t.clone(),
            updated: t,
        }
    }

    /// CREATE TABLE (and indexes) for this collection.
    pub fn create_table(&self, conn: &Connection) -> rusqlite::Result<()> {
        let cols: Vec<String> = self
            .fields
            .iter()
            .map(|f| {
                if f.primary_key {
                    format!(
                        "{} TEXT PRIMARY KEY NOT NULL",
                        crate::serve::query::filter::quote_ident(&f.name)
                    )
                } else {
                    f.column()
                }
            })
            .collect();
        let table = crate::serve::query::filter::quote_ident(&self.name);
        conn.execute_batch(&format!("CREATE TABLE {table} ({})", cols.join(", ")))?;
        if self.is_auth() {
            conn.execute_batch(&format!(
                "CREATE UNIQUE INDEX {} ON {table} (email) WHERE email != ''",
                crate::serve::query::filter::quote_ident(&format!("idx_email_{}", self.id))
            ))?;
        }
        Ok(())
    }

    pub fn insert_meta(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO _collections (id, system, type, name, fields, indexes, listRule, viewRule, createRule, updateRule, deleteRule, created, updated, options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, json_object('manageRule', ?14))",
            params![
                self.id,
                self.system,
                self.kind,
                self.name,
                serde_json::to_string(&self.fields).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&self.indexes).unwrap_or_else(|_| "[]".into()),
                self.rules.list,
                self.rules.view,
                self.rules.create,
                self.rules.update,
                self.rules.delete,
                self.created,
                self.updated,
                self.rules.manage
            ],
        )?;
        Ok(())
    }

    pub fn update_meta(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute(
            "UPDATE _collections SET fields = ?2, listRule = ?3, viewRule = ?4, createRule = ?5, updateRule = ?6, deleteRule = ?7, updated = ?8, indexes = ?9, options = json_set(options, '$.manageRule', ?10) WHERE id = ?1",
            params![
                self.id,
                serde_json::to_string(&self.fields).unwrap_or_else(|_| "[]".into()),
                self.rules.list,
                self.rules.view,
                self.rules.create,
                self.rules.update,
                self.rules.delete,
                self.updated,
                serde_json::to_string(&self.indexes).unwrap_or_else(|_| "[]".into()),
                self.rules.manage
            ],
        )?;
        Ok(())
    }
}

const COLLECTION_COLS: &str = "id, name, type, system, fields, indexes, listRule, viewRule, createRule, updateRule, deleteRule, created, updated, json_extract(options, '$.manageRule')";

/// Autodate fields stored without `onCreate`/`onUpdate` (before strata
/// kept them) shown with the options they behave by.
fn with_autodate_options(mut fields: Vec<Field>) -> Vec<Field> {
    for f in fields.iter_mut().filter(|f| f.kind == FieldType::Autodate) {
        f.on_create = Some(f.stamps(false));
        f.on_update = Some(f.stamps(true));
    }
    fields
}

fn row_to_collection(r: &rusqlite::Row) -> rusqlite::Result<Collection> {
    let fields: String = r.get(4)?;
    let indexes: String = r.get(5)?;
    Ok(Collection {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        system: r.get(3)?,
        // A row we wrote ourselves; unreadable JSON means no user fields.
        fields: with_autodate_options(serde_json::from_str(&fields).unwrap_or_default()),
        indexes: serde_json::from_str(&indexes).unwrap_or_default(),
        rules: Rules {
            list: r.get(6)?,
            view: r.get(7)?,
            create: r.get(8)?,
            update: r.get(9)?,
            delete: r.get(10)?,
            manage: r.get(13)?,
        },
        created: r.get(11)?,
        updated: r.get(12)?,
    })
}

/// A collection by id or name; 404 if there is none.
pub fn find_collection(conn: &Connection, id_or_name: &str) -> ApiResult<Collection> {
    // Cached: every request looks its collection up.
    conn.prepare_cached(&format!(
        "SELECT {COLLECTION_COLS} FROM _collections WHERE id = ?1 OR name = ?1 COLLATE NOCASE"
    ))?
    .query_row([id_or_name], row_to_collection)
    .optional()?
    .ok_or_else(ApiError::not_found)
}

pub fn all_collections(conn: &Connection) -> ApiResult<Vec<Collection>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLLECTION_COLS} FROM _collections ORDER BY created, rowid"
    ))?;
    let rows = stmt.query_map([], row_to_collection)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// PocketBase's fixed id of the default `users` collection.
pub const USERS_ID: &str = "_pb_users_auth_";

/// The `users` auth collection PocketBase creates in a new app: `name` and
/// an image `avatar`, each user seeing and changing only itself, anyone
/// signing up.
pub fn default_users() -> Collection {
    let own = || Some("id = @request.auth.id".to_string());
    let user_field = |name: &str, kind: FieldType| Field {
        id: format!("{}{name}", kind_tag(kind)),
        system: false,
        ..Field::new(name, kind)
    };
    let avatar = Field {
        max_select: 1,
        mime_types: [
            "image/jpeg",
            "image/png",
            "image/svg+xml",
            "image/gif",
            "image/webp",
        ]
        .map(String::from)
        .to_vec(),
        ..user_field("avatar", FieldType::File)
    };
    let stamp = |name: &str, on_update: bool| Field {
        system: false,
        ..Field::autodate(name, true, on_update)
    };
    let mut c = Collection::build(
        "users",
        "auth",
        vec![
            user_field("name", FieldType::Text),
            avatar,
            stamp("created", false),
            stamp("updated", true),
        ],
        Rules {
            list: own(),
            view: own(),
            create: Some(String::new()),
            update: own(),
            delete: own(),
            manage: None,
        },
    );
    c.id = USERS_ID.into();
    c
}

/// Create the PocketBase tables, the `_superusers` collection with its first
/// superuser, the default `users` collection, and the tenant's JWT secret.
/// Runs in one transaction.
pub fn bootstrap_data(conn: &mut Connection, email: &str, password_hash: &str) -> ApiResult<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(DATA_SCHEMA)?;
    let su = Collection::build(
        SUPERUSERS,
        "auth",
        vec![
            Field::autodate("created", true, false),
            Field::autodate("updated", true, true),
        ],
        Rules::default(),
    );
    su.create_table(&tx)?;
    su.insert_meta(&tx)?;
    let users = default_users();
    users.create_table(&tx)?;
    users.insert_meta(&tx)?;
    let t = now();
    tx.execute(
        "INSERT INTO _superusers (id, password, tokenKey, email, emailVisibility, verified, created, updated) VALUES (?1, ?2, ?3, ?4, 0, 1, ?5, ?5)",
        params![new_id(), password_hash, new_secret(), email, t],
    )?;
    tx.execute(
        "INSERT INTO _params (id, value, created, updated) VALUES ('settings', ?1, ?2, ?2)",
        params![
            json!({"strata": {"jwtSecret": new_secret()}}).to_string(),
            t
        ],
    )?;
    tx.commit()?;
    Ok(())
}
