//! One component per page route.

mod docs;
mod home;
mod not_found;

pub use docs::Docs;
pub use home::Home;
pub use not_found::NotFound;
