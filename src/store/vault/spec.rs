//! `vault:URL/MOUNT[/PREFIX][?layout=item]` (alias `openbao:`).

/// Where a credential `namespace/name` lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Field `name` of the secret at `PREFIX/namespace` (what `vault kv get
    /// -field=name` reads).
    Secret,
    /// One secret per credential at `PREFIX/namespace/name`, field `value`.
    Item,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSpec {
    /// `http(s)://host[:port]`.
    pub addr: String,
    /// Mount and prefix, without slashes at either end.
    pub path: String,
    pub layout: Layout,
}

/// The field an item-layout secret keeps its value in.
pub const ITEM_FIELD: &str = "value";

/// Parse what follows `vault:`/`openbao:`. `None` when malformed: no
/// http(s) scheme, a user or password in the URL (the token never goes
/// there), no mount, an unknown query parameter.
pub fn parse(rest: &str) -> Option<VaultSpec> {
    let (url, query) = match rest.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (rest, None),
    };
    let layout = match query {
        None | Some("layout=secret") => Layout::Secret,
        Some("layout=item") => Layout::Item,
        Some(_) => return None,
    };
    let scheme_len = if url.starts_with("https://") {
        8
    } else if url.starts_with("http://") {
        7
    } else {
        return None;
    };
    let after = &url[scheme_len..];
    let (host, path) = after.split_once('/')?;
    if host.is_empty() || host.contains('@') {
        return None;
    }
    let path = path.trim_matches('/');
    if path.is_empty()
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    Some(VaultSpec {
        addr: url[..scheme_len + host.len()].to_string(),
        path: path.to_string(),
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_address_path_and_layout() {
        let s = parse("http://127.0.0.1:8200/secret/apps/billing").unwrap();
        assert_eq!(s.addr, "http://127.0.0.1:8200");
        assert_eq!(s.path, "secret/apps/billing");
        assert_eq!(s.layout, Layout::Secret);
        let s = parse("https://vault.example:8200/kv/?layout=item").unwrap();
        assert_eq!(s.path, "kv");
        assert_eq!(s.layout, Layout::Item);
        for bad in [
            "127.0.0.1:8200/secret",
            "http://127.0.0.1:8200",
            "http://127.0.0.1:8200/",
            "http://u:p@h/secret",
            "http://h/secret?layout=x",
            "http://h/secret//a",
            "http://h/secret/../x",
            "ftp://h/secret",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
