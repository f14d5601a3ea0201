//! Plain Rust types that hold the app's logic, tested with ordinary `#[test]`s.
//! Components only render what these compute.

pub mod describe;
pub mod layout;
pub mod log;
pub mod openapi;
pub mod time;

pub use layout::{Arrow, Diagram, Geometry, Lane, Tone};
pub use log::EventLog;
