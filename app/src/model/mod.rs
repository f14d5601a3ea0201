//! Plain Rust types that hold the app's logic, tested with ordinary `#[test]`s.
//! Components only render what these compute.

pub mod describe;
pub mod export;
pub mod filter;
#[cfg(test)]
mod fixtures;
pub mod inspect;
pub mod lab;
pub mod layout;
pub mod openapi;
pub mod playback;
pub mod time;
pub mod timeline;

pub use filter::Filter;
pub use layout::{Arrow, Diagram, Geometry, Lane, Tone};
pub use timeline::{Item, ItemKey, Timeline};
