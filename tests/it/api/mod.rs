//! The HTTP push API on one node (docs/api.md §3, §4, §5).

pub(crate) mod auth_token;
mod errors;
mod examples;
mod groups;
mod isolation;
mod limits;
mod register;
mod send;
