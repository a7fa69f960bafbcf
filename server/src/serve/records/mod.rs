//! Record values between JSON and columns.
//!
//! - [`values`]: a request body checked and converted to columns;
//! - [`dates`]: a date field's value in PocketBase's stored form;
//! - [`auth_fields`]: an auth record's `verified`, `email` and password
//!   rules (manage access, old password, `tokenKey` rotation);
//! - [`output`]: a row read back into PocketBase's JSON, shown as the
//!   caller may see it;
//! - [`fields`]: the `fields` parameter (paths, `*`, `:excerpt`) that cuts
//!   the answer.

pub mod auth_fields;
pub mod dates;
pub mod fields;
pub mod output;
pub mod values;
