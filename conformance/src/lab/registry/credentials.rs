use std::fmt;

use oci_client::secrets::RegistryAuth;

use crate::lab::error::LabError;

/// A user the registry's htpasswd file admits.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { username: username.into(), password: password.into() }
    }

    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Basic(self.username.clone(), self.password.clone())
    }

    /// One htpasswd line. The registry only accepts bcrypt.
    pub(super) fn htpasswd_line(&self) -> Result<String, LabError> {
        // bcrypt's lowest cost: it keeps debug-built tests fast, and a lab password protects
        // nothing.
        const COST: u32 = 4;
        let hash = bcrypt::hash(&self.password, COST)?;
        Ok(format!("{}:{hash}\n", self.username))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}
