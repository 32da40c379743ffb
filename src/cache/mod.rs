//! The stage cache (see DESIGN.md): a stage's key from the plan and what
//! only the backend knows, and stores that keep results by key. So far:
//! the files a stage's `inputs` match, hashed through an index like git's
//! (`index`), the key made of a stage's parts (`key`), and the local store
//! whose entries are checked blob by blob when read (`store`).

pub mod index;
pub mod key;
pub mod store;
