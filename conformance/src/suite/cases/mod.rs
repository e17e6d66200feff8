//! The cases, by area. Each area lists its cases; `all` puts the areas in running order.

mod container;
mod image;
mod pod;
mod runtime;

use super::Case;

macro_rules! case {
    ($name:literal, $f:path) => {
        $crate::suite::Case { name: $name, run: |context| Box::pin($f(context)) }
    };
}
use case;

pub fn all() -> Vec<Case> {
    runtime::cases().into_iter().chain(image::cases()).chain(pod::cases()).chain(container::cases()).collect()
}

/// Turns a check into a case failure with the check's words.
fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why()) }
}

/// A gRPC error in a failure reason: the code and the runtime's message.
pub(in crate::suite) fn rpc_failed(rpc: &str, status: tonic::Status) -> String {
    format!("{rpc}: {:?}: {}", status.code(), status.message())
}
