//! A CRI client for any CRI socket: the conformance suite, benchmarks, and the test lab (a local
//! registry and the images the suite runs) that crisp's own end-to-end tests share.

pub mod bench;
pub mod client;
pub mod lab;
pub mod streaming;
pub mod suite;
