//! From a client's words to SQL: every piece of SQL a request makes is
//! built here, from bound parameters and names found in the schema.
//!
//! - [`filter`]: the filter language, parsed to an AST and compiled to SQL;
//! - [`macros`]: the datetime macros (`@yesterday`, `@monthEnd`, `@weekday`...);
//! - [`names`]: what a filter's names are in a tenant's schema (relation
//!   hops, `@collection` joins) and how far a client may reach;
//! - [`rules`]: the caller, API rules as conditions, the records' `SELECT`;
//! - [`relations`]: select and relation values, `expand`, delete cascades;
//! - [`indexes`]: collection indexes, parsed rather than run as given;
//! - [`logs`]: the names of `auxiliary.db`'s `_logs` for `/api/logs`.

pub mod filter;
pub mod indexes;
pub mod logs;
pub mod macros;
pub mod names;
pub mod relations;
pub mod rules;
