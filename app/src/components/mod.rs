//! Widgets: they render model types and hold no logic of their own.

pub mod diagram;

pub use diagram::SequenceDiagram;
