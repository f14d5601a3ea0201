//! Widgets: they render model types and hold no logic of their own.

pub mod diagram;
pub mod operation;
pub mod transcripts;

pub use diagram::{Legend, LiveDiagram, SequenceDiagram};
pub use operation::OperationForm;
pub use transcripts::TranscriptsCard;
