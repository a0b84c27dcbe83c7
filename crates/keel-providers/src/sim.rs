//! keel's simulator as an in-process provider: the same engine and the same
//! plans as `keel sim`, acted out without HTTP, each fault surfacing as the
//! error an HTTP provider would raise for it. The default config answers
//! with it when no API key is set.

mod client;
mod request;
mod response;
mod stream;

pub use client::Sim;
