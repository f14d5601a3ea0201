//! Widgets: they render model types and hold no logic of their own.

pub mod diagram;
pub mod inspector;
pub mod operation;
pub mod toolbar;
pub mod transcripts;

pub use diagram::{Legend, LiveDiagram, SequenceDiagram};
pub use inspector::Inspector;
pub use operation::OperationForm;
pub use toolbar::{FilterBar, NicknameField, StatusLine};
pub use transcripts::TranscriptsCard;
