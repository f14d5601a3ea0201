//! Widgets: they render model types and hold no logic of their own.

pub mod diagram;
pub mod exports;
pub mod inspector;
pub mod operation;
pub mod presenter;
pub mod toolbar;
pub mod transcripts;

pub use diagram::{DiagramCard, Legend, LiveDiagram, SequenceDiagram};
pub use exports::ExportMenu;
pub use inspector::Inspector;
pub use operation::OperationForm;
pub use presenter::{Blank, FaultConsole, PlaybackBar};
pub use toolbar::{FilterBar, NicknameField, StatusLine, ViewSwitch};
pub use transcripts::TranscriptsCard;
