//! A URL parsed into what a request needs: where to connect, how, and what to ask for.

use std::rc::Rc;

use http::Uri;

#[derive(Debug)]
pub(super) struct Target {
    /// `scheme://host:port`: what a kept-alive connection is reused for.
    pub(super) key: Rc<str>,
    /// `host[:port]` for the Host header.
    pub(super) authority: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: bool,
    pub(super) path: String,
}

/// Where a URL's server is: its host (an IPv6 one without brackets) and its port, 443 or 80 by
/// default as `tls` says. Shared by `http` and `ws`.
pub(crate) fn endpoint(uri: &Uri, tls: bool) -> Result<(String, u16), String> {
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    Ok((host, uri.port_u16().unwrap_or(if tls { 443 } else { 80 })))
}

pub(super) fn target(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let (host, port) = endpoint(&uri, tls)?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // The Host header never carries `user:password@`.
    let authority = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| host.clone());
    Ok(Target {
        key: format!("{}://{host}:{port}", if tls { "https" } else { "http" }).into(),
        authority,
        host,
        port,
        tls,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    })
}
