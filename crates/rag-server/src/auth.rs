//! API keys: who may read or write which collections, and the tenant filter a key is held to.
//!
//! Keys are compared by their SHA-256 digests, so the secrets are not kept in memory past start-up
//! and no comparison leaks a key's prefix through timing. A key's value never reaches a log.

use std::collections::HashMap;

use axum::http::HeaderMap;
use rag::config::{Access, ApiKeyConfig};
use rag::core::{Filter, Metadata};
use rag::{RagError, Result};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The environment variable that may hold one extra key with read-write access to everything.
pub const ADMIN_KEY_ENV: &str = "RAG_API_KEY";

/// Whom a request acts for.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The key's name (`anonymous` when the server has no keys).
    pub name: String,
    collections: Vec<String>,
    access: Access,
    tenant: Metadata,
}

/// What a request wants to do with a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Query, search, stats.
    Read,
    /// Ingest or delete.
    Write,
}

impl Principal {
    /// The principal of a server without keys: everything allowed.
    pub fn anonymous() -> Self {
        Self { name: "anonymous".into(), collections: vec!["*".into()], access: Access::ReadWrite, tenant: Metadata::new() }
    }

    /// Whether this principal may use `collection` at all.
    pub fn can_see(&self, collection: &str) -> bool {
        self.collections.iter().any(|c| c == "*" || c == collection)
    }

    /// `Ok` if this principal may do `need` on `collection`; otherwise the 403 that says why.
    pub fn check(&self, collection: &str, need: Need) -> std::result::Result<(), ApiError> {
        if !self.can_see(collection) {
            return Err(ApiError::forbidden(format!(
                "key `{}` has no access to collection `{collection}` (it may use: {})",
                self.name,
                self.collections.join(", ")
            )));
        }
        if need == Need::Write && self.access != Access::ReadWrite {
            return Err(ApiError::forbidden(format!(
                "key `{}` may only read collection `{collection}`: writing needs a key with access = \"read_write\"",
                self.name
            )));
        }
        Ok(())
    }

    /// The tenant this principal is held to, if any.
    pub fn tenant(&self) -> Option<&Metadata> {
        (!self.tenant.is_empty()).then_some(&self.tenant)
    }

    /// `filter` narrowed to this principal's tenant (the tenant's fields must all match).
    pub fn scope(&self, filter: Option<Filter>) -> Option<Filter> {
        let tenant = self.tenant.iter().map(|(k, v)| Filter::Eq(k.clone(), v.clone())).reduce(Filter::and);
        match (tenant, filter) {
            (Some(t), Some(f)) => Some(t.and(f)),
            (t, f) => t.or(f),
        }
    }

    /// Stamps the tenant's fields on a document's metadata; a document that already names a
    /// different value for a tenant field is refused (it would be written into another tenant).
    pub fn stamp(&self, doc_id: &str, metadata: &mut Metadata) -> std::result::Result<(), ApiError> {
        for (k, v) in &self.tenant {
            match metadata.get(k) {
                Some(existing) if existing != v => {
                    return Err(ApiError::forbidden(format!(
                        "document `{doc_id}`: metadata `{k}` = {existing:?}, but key `{}` writes only for {k} = {v:?}",
                        self.name
                    )));
                }
                _ => {
                    metadata.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(())
    }
}

/// The configured keys, by digest.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    by_digest: HashMap<[u8; 32], Principal>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    /// Reads the keys from the configuration (`key` or `key_env`) and `RAG_API_KEY`, through
    /// `env`. A key whose variable is unset or empty is an error naming the key and the variable.
    pub fn load(config: &[ApiKeyConfig], env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut by_digest = HashMap::new();
        for k in config {
            let value = match (&k.key, &k.key_env) {
                (Some(v), _) => v.clone(),
                (None, Some(var)) => env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    RagError::config(format!("server key `{}`: environment variable `{var}` is unset or empty", k.name))
                })?,
                (None, None) => {
                    return Err(RagError::config(format!("server key `{}`: give key_env or key", k.name)));
                }
            };
            if value.len() < 16 {
                return Err(RagError::config(format!(
                    "server key `{}` is shorter than 16 characters: use a long random key (openssl rand -hex 32)",
                    k.name
                )));
            }
            let p = Principal {
                name: k.name.clone(),
                collections: k.collections.clone(),
                access: k.access,
                tenant: k.tenant.clone(),
            };
            if by_digest.insert(digest(&value), p).is_some() {
                return Err(RagError::config(format!("server key `{}` has the same value as another key", k.name)));
            }
        }
        if let Some(admin) = env(ADMIN_KEY_ENV).filter(|v| !v.is_empty()) {
            let p = Principal { name: ADMIN_KEY_ENV.into(), ..Principal::anonymous() };
            by_digest.insert(digest(&admin), p);
        }
        Ok(Self { by_digest })
    }

    /// Whether any key is configured (without keys, every request is allowed).
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The principal of a request: its bearer key's, or anonymous when no key is configured.
    pub fn authenticate(&self, headers: &HeaderMap) -> std::result::Result<Principal, ApiError> {
        if self.is_empty() {
            return Ok(Principal::anonymous());
        }
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("send an API key: `Authorization: Bearer KEY`"))?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer KEY`"))?;
        self.by_digest.get(&digest(key.trim())).cloned().ok_or_else(|| ApiError::unauthorized("unknown API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag::core::MetadataValue;

    fn key(name: &str, env: &str, collections: &[&str], access: Access, tenant: Option<&str>) -> ApiKeyConfig {
        let mut t = Metadata::new();
        if let Some(v) = tenant {
            t.insert("tenant".into(), MetadataValue::Str(v.into()));
        }
        ApiKeyConfig {
            name: name.into(),
            key_env: Some(env.into()),
            key: None,
            collections: collections.iter().map(|s| s.to_string()).collect(),
            access,
            tenant: t,
        }
    }

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, format!("Bearer {v}").parse().unwrap());
        h
    }

    #[test]
    fn keys_grant_what_they_name_and_no_more() {
        let cfg =
            [key("reader", "R", &["papers"], Access::Read, None), key("acme", "A", &["*"], Access::ReadWrite, Some("acme"))];
        let env = |v: &str| match v {
            "R" => Some("r".repeat(20)),
            "A" => Some("a".repeat(20)),
            _ => None,
        };
        let keys = Keys::load(&cfg, env).unwrap();
        let reader = keys.authenticate(&bearer(&"r".repeat(20))).unwrap();
        assert!(reader.check("papers", Need::Read).is_ok());
        assert_eq!(reader.check("papers", Need::Write).unwrap_err().status, 403);
        assert_eq!(reader.check("other", Need::Read).unwrap_err().status, 403);
        assert_eq!(keys.authenticate(&bearer("wrong-key-wrong-key")).unwrap_err().status, 401);
        assert_eq!(keys.authenticate(&HeaderMap::new()).unwrap_err().status, 401);

        // Without a tenant, the caller's own filter is kept as it is.
        assert_eq!(reader.scope(Some(Filter::eq("lang", "en"))), Some(Filter::eq("lang", "en")));
        assert_eq!(reader.scope(None), None);

        let acme = keys.authenticate(&bearer(&"a".repeat(20))).unwrap();
        let scoped = acme.scope(Some(Filter::eq("lang", "en"))).unwrap();
        assert!(scoped.to_string().contains("tenant == \"acme\""), "{scoped}");
        let mut m = Metadata::new();
        acme.stamp("d", &mut m).unwrap();
        assert_eq!(m.get("tenant"), Some(&MetadataValue::Str("acme".into())));
        m.insert("tenant".into(), MetadataValue::Str("other".into()));
        assert_eq!(acme.stamp("d", &mut m).unwrap_err().status, 403);
    }

    #[test]
    fn a_missing_key_variable_is_named() {
        let cfg = [key("reader", "NOPE_UNSET", &["*"], Access::Read, None)];
        let e = Keys::load(&cfg, |_| None).unwrap_err().to_string();
        assert!(e.contains("NOPE_UNSET") && e.contains("reader"), "{e}");
        let short = [key("short", "S", &["*"], Access::Read, None)];
        assert!(Keys::load(&short, |_| Some("abc".into())).is_err());
    }
}
