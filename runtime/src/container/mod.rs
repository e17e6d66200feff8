//! Containers: their records and their lifecycle on the pod's monitor and the OCI runtime.

pub mod lifecycle;
pub mod model;
pub mod store;

pub use lifecycle::{
    ContainerDirs, ContainerError, ContainerState, ContainerView, Containers, ContainersConfig, ExecOutput, Exit,
    NewContainer, Prepare, PrepareFailure, Prepared, StdioSession,
};
pub use model::{ContainerKey, ContainerRecord, MountRecord, Stage, UserRecord};
pub use store::{Container, ContainerStore, StoreError};
