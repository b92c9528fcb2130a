//! The settings the configuration reads for this store (`[store.pinecone]`), and the modes its
//! builder takes: plain data, built without Python (no `store` feature needed).

/// Which index to use.
#[derive(Debug, Clone, PartialEq)]
pub enum PineconeIndex {
    /// By name: resolved through the control plane, created if missing.
    Name(String),
    /// By data-plane host (`https://my-index-abc.svc.pinecone.io`); no control-plane call.
    Host(String),
}

/// A Pinecone store's settings: the `[store.pinecone]` table of the configuration, read by
/// this crate ([`PineconeStore::from_settings`](crate::PineconeStore::from_settings)).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PineconeSettings {
    /// The index by name: created (serverless) if missing; unset: the collection's name.
    pub index: Option<String>,
    /// Or the index by its data-plane host (no control-plane call).
    pub host: Option<String>,
    /// A control-plane URL in place of Pinecone's (tests point it at a local server).
    pub control_host: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Environment variable holding the API key; the key is never logged.
    pub api_key_env: String,
    /// Serverless cloud of a new index.
    pub cloud: String,
    /// Serverless region of a new index.
    pub region: String,
}

impl Default for PineconeSettings {
    fn default() -> Self {
        Self {
            index: None,
            host: None,
            control_host: None,
            namespace: String::new(),
            api_key_env: "PINECONE_API_KEY".into(),
            cloud: "aws".into(),
            region: "us-east-1".into(),
        }
    }
}
