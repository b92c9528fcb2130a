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
    tenant: Option<Tenant>,
    local: bool,
}

/// The prefix of every document id a tenant-bound key writes: the ids of documents written
/// without a tenant may not start with it.
pub const TENANT_ID_PREFIX: &str = "tenant:";

/// A tenant: the metadata a key is held to, and the namespace its documents live in.
///
/// A document a tenant writes as `x` is stored as `tenant:FIELD=VALUE/x` (fields in key order,
/// joined by `,`; `%`, `,`, `=`, `/` and `#` in names and values percent-encoded, so two tenants
/// never share a prefix). So two tenants each hold their own `x`: neither can see, replace or
/// remove the other's, and the ingest record, the chunk ids, the keyword index, the vector
/// store and deletes all keep them apart. Ids go back to the tenant without the prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    fields: Metadata,
    namespace: String,
}

fn escape_id_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | ',' | '=' | '/' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl Tenant {
    /// The tenant of these fields; `None` for none.
    pub fn new(fields: Metadata) -> Option<Self> {
        if fields.is_empty() {
            return None;
        }
        let parts: Vec<String> =
            fields.iter().map(|(k, v)| format!("{}={}", escape_id_part(k), escape_id_part(&v.to_string()))).collect();
        let namespace = format!("{TENANT_ID_PREFIX}{}", parts.join(","));
        Some(Self { fields, namespace })
    }

    /// The tenant's fields.
    pub fn fields(&self) -> &Metadata {
        &self.fields
    }

    /// The namespace (`tenant:tenant=acme`): the prefix of its ids, its ingest origin and its
    /// embedding-cache namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The stored id of the tenant's document `id`.
    pub fn qualify(&self, id: &str) -> String {
        format!("{}/{id}", self.namespace)
    }

    /// The tenant's own id of a stored id (chunk or document), when it is the tenant's.
    pub fn unqualify<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored.strip_prefix(self.namespace.as_str()).and_then(|rest| rest.strip_prefix('/'))
    }

    /// The filter every retrieval of the tenant is held to: all its fields match.
    pub fn filter(&self) -> Option<Filter> {
        self.fields.iter().map(|(k, v)| Filter::Eq(k.clone(), v.clone())).reduce(Filter::and)
    }
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
        Self { name: "anonymous".into(), collections: vec!["*".into()], access: Access::ReadWrite, tenant: None, local: false }
    }

    /// The `rag` command on this machine, holding the token of the data directory's
    /// `serve.json` ([`crate::discovery`]): everything, and files by path.
    pub fn local() -> Self {
        Self { name: "local".into(), local: true, ..Self::anonymous() }
    }

    /// Whether this is the local `rag` command ([`Principal::local`]).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Whether the key names `collection` itself (not through `*`).
    pub fn names(&self, collection: &str) -> bool {
        self.collections.iter().any(|c| c == collection)
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
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// `filter` narrowed to this principal's tenant (the tenant's fields must all match).
    pub fn scope(&self, filter: Option<Filter>) -> Option<Filter> {
        let tenant = self.tenant.as_ref().and_then(Tenant::filter);
        match (tenant, filter) {
            (Some(t), Some(f)) => Some(t.and(f)),
            (t, f) => t.or(f),
        }
    }

    /// The stored id of document `id` written or deleted by this principal: in its tenant's
    /// namespace when it has one ([`Tenant::qualify`]).
    pub fn document_id(&self, id: &str) -> String {
        match &self.tenant {
            Some(t) => t.qualify(id),
            None => id.to_owned(),
        }
    }

    /// A stored id as this principal knows it: without its tenant's namespace.
    pub fn shown_id(&self, stored: &str) -> String {
        match self.tenant.as_ref().and_then(|t| t.unqualify(stored)) {
            Some(own) => own.to_owned(),
            None => stored.to_owned(),
        }
    }

    /// Rewrites the ids of hits for this principal ([`Principal::shown_id`]).
    pub fn present_hits(&self, hits: &mut [rag::Hit]) {
        if self.tenant.is_some() {
            for h in hits {
                h.doc_id = self.shown_id(&h.doc_id);
                h.chunk_id = self.shown_id(&h.chunk_id);
            }
        }
    }

    /// Rewrites the ids of an answer's citations and hits for this principal.
    pub fn present(&self, result: &mut rag::QueryResult) {
        if self.tenant.is_some() {
            for c in &mut result.citations {
                c.doc_id = self.shown_id(&c.doc_id);
                c.chunk_id = self.shown_id(&c.chunk_id);
            }
            self.present_hits(&mut result.hits);
        }
    }

    /// Stamps the tenant's fields on a document's metadata; a document that already names a
    /// different value for a tenant field is refused (it would be written into another tenant).
    pub fn stamp(&self, doc_id: &str, metadata: &mut Metadata) -> std::result::Result<(), ApiError> {
        let Some(tenant) = &self.tenant else { return Ok(()) };
        for (k, v) in tenant.fields() {
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
    local: Option<[u8; 32]>,
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
                tenant: Tenant::new(k.tenant.clone()),
                local: false,
            };
            if by_digest.insert(digest(&value), p).is_some() {
                return Err(RagError::config(format!("server key `{}` has the same value as another key", k.name)));
            }
        }
        if let Some(admin) = env(ADMIN_KEY_ENV).filter(|v| !v.is_empty()) {
            let p = Principal { name: ADMIN_KEY_ENV.into(), ..Principal::anonymous() };
            by_digest.insert(digest(&admin), p);
        }
        Ok(Self { by_digest, local: None })
    }

    /// Accepts `token` as the local `rag` command's ([`Principal::local`]), with or without
    /// configured keys.
    pub fn with_local_token(mut self, token: &str) -> Self {
        self.local = Some(digest(token));
        self
    }

    /// Whether any key is configured (without keys, every request is allowed).
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The principal of a request: its bearer key's, or anonymous when no key is configured.
    pub fn authenticate(&self, headers: &HeaderMap) -> std::result::Result<Principal, ApiError> {
        let value = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let bearer = value.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))).map(str::trim);
        let presented = bearer.map(digest);
        if presented.is_some() && presented == self.local {
            return Ok(Principal::local());
        }
        if self.is_empty() {
            return Ok(Principal::anonymous());
        }
        if value.is_none() {
            return Err(ApiError::unauthorized("send an API key: `Authorization: Bearer KEY`"));
        }
        let key = bearer.ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer KEY`"))?;
        self.by_digest.get(&digest(key)).cloned().ok_or_else(|| ApiError::unauthorized("unknown API key"))
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

        // A tenant's documents live in its namespace; ids go back without it.
        assert_eq!(acme.document_id("x"), "tenant:tenant=acme/x");
        assert_eq!(acme.shown_id("tenant:tenant=acme/x#0"), "x#0");
        assert_eq!(reader.document_id("x"), "x");
        assert_eq!(reader.shown_id("tenant:tenant=acme/x"), "tenant:tenant=acme/x");
    }

    #[test]
    fn the_local_token_is_the_local_principal_with_or_without_keys() {
        let token = "local-token-0123456789abcdef";
        let open = Keys::default().with_local_token(token);
        assert!(open.authenticate(&bearer(token)).unwrap().is_local());
        let anyone = open.authenticate(&HeaderMap::new()).unwrap();
        assert!(!anyone.is_local(), "without keys everyone is anonymous, but not local");
        let cfg = [key("reader", "R", &["*"], Access::Read, None)];
        let keyed = Keys::load(&cfg, |_| Some("r".repeat(20))).unwrap().with_local_token(token);
        assert!(keyed.authenticate(&bearer(token)).unwrap().is_local());
        assert!(!keyed.authenticate(&bearer(&"r".repeat(20))).unwrap().is_local(), "no API key is local");
        assert_eq!(keyed.authenticate(&bearer("not-the-token-0123456789")).unwrap_err().status, 401);
    }

    #[test]
    fn tenant_namespaces_never_share_a_prefix() {
        let t = |pairs: &[(&str, &str)]| {
            Tenant::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), MetadataValue::Str((*v).to_owned()))).collect()).unwrap()
        };
        let a = t(&[("tenant", "a")]);
        let a_slash = t(&[("tenant", "a/b")]);
        // `a` + id `b/c` and `a/b` + id `c` would collide without escaping.
        assert_ne!(a.qualify("b/c"), a_slash.qualify("c"));
        assert_eq!(a_slash.unqualify(&a_slash.qualify("c")), Some("c"));
        assert_eq!(a.unqualify(&a_slash.qualify("c")), None, "another tenant's id is never taken for one's own");
        let two = t(&[("org", "acme"), ("team", "x")]);
        let comma = t(&[("org", "acme,team=x")]);
        assert_ne!(two.namespace(), comma.namespace());
        assert_eq!(two.namespace(), "tenant:org=acme,team=x");
        assert_eq!(Tenant::new(Metadata::new()), None);
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
