//! Record values between JSON and columns.
//!
//! - [`values`]: a request body checked and converted to columns;
//! - [`output`]: a row read back into PocketBase's JSON, shown as the
//!   caller may see it.

pub mod output;
pub mod values;
