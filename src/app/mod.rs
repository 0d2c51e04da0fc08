//! The application layer between `attribution` and the front ends (the CLI,
//! the wasm bindings and through them the page).

pub mod dataset;
