//! One component per page route.

mod docs;
mod home;
mod instructor;
mod lab;
mod not_found;
mod push;

pub use docs::Docs;
pub use home::Home;
pub use instructor::Instructor;
pub use lab::Lab;
pub use not_found::NotFound;
pub use push::Push;
