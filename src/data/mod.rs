//! Task data for the zoo and the labs: real tables (GeoNames, VADER) turned into decoder
//! tasks, encoder classification tasks, and procedurally generated images.

pub mod classify;
pub mod shapes;
pub mod sources;
pub mod text_tasks;

pub use sources::Sources;
pub use text_tasks::{Example, TextTask, TextTasks};
