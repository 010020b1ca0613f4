//! `oct proxy` / `oct-vaurien`: Vaurien's flags, `--route`s and `--config` turned into the
//! proxies to start. A flag given wins over the file's `[vaurien]` value, which wins over the
//! default.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::cli::ProxyArgs;

/// The checked options; `Err` is a one-line message naming the flag, file or key.
pub fn options(a: &ProxyArgs) -> Result<proxy::Options> {
    let mut options: proxy::config::BehaviorOptions = BTreeMap::new();
    let (mut ini, mut from_json, mut json_http) = (None, Vec::new(), None);
    if let Some(path) = &a.config {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| anyhow!("--config {shown}: {e}"))?;
        if shown.ends_with(".json") || text.trim_start().starts_with('{') {
            let timeout = timeout(a.timeout)?;
            (from_json, json_http) =
                proxy::config::json(&shown, &text, timeout).map_err(|e| anyhow!(e))?;
        } else {
            let i = proxy::config::ini(&shown, &text).map_err(|e| anyhow!(e))?;
            options = i.options.clone();
            ini = Some(i);
        }
    }
    for (b, o, v) in &a.options {
        options
            .entry(b.clone())
            .or_default()
            .insert(o.clone(), v.clone());
    }
    let file = |key: &str| ini.as_ref().and_then(|i| i.get(key)).map(str::to_owned);
    let timeout_secs = match (a.timeout, file("timeout")) {
        (Some(t), _) => Some(t),
        (None, Some(t)) => Some(
            t.parse::<f64>()
                .map_err(|_| anyhow!("--config: [vaurien] timeout {t:?}: not seconds"))?,
        ),
        (None, None) => None,
    };
    let timeout = timeout(timeout_secs)?;
    let mut proxies = Vec::new();
    let backend = a.backend.clone().or_else(|| file("backend"));
    let sections = ini.as_ref().is_some_and(|i| !i.proxies.is_empty()) || !from_json.is_empty();
    match backend {
        Some(backend) => {
            let behavior = a
                .behavior
                .clone()
                .or_else(|| file("behavior"))
                .unwrap_or_else(|| "dummy".into());
            let default = proxy::Mix::parse_spec(&behavior, &options)
                .map_err(|e| anyhow!("--behavior: {e}"))?;
            let routes = a
                .route
                .iter()
                .map(|r| proxy::state::route(r, &options).map_err(|e| anyhow!("{e}")))
                .collect::<Result<Vec<_>>>()?;
            let plan = proxy::Plan { routes, default };
            for name in options.keys() {
                let elsewhere = ini.as_ref().is_some_and(|i| !i.proxies.is_empty());
                if !proxy::state::uses(&plan, name) && !elsewhere {
                    bail!("--behavior-{name}-…: {name:?} is in neither --behavior {behavior:?} nor a --route");
                }
            }
            let protocol = a
                .protocol
                .clone()
                .or_else(|| file("protocol"))
                .unwrap_or_else(|| "tcp".into());
            proxies.push(proxy::Spec {
                name: "default".into(),
                listen: a
                    .proxy
                    .clone()
                    .or_else(|| file("proxy"))
                    .unwrap_or_else(|| "localhost:8000".into()),
                backend,
                protocol: proxy::Protocol::parse(&protocol).ok_or_else(|| {
                    anyhow!(
                        "--protocol {protocol}: unknown ({})",
                        proxy::Protocol::NAMES
                    )
                })?,
                plan,
                timeout,
            });
        }
        None if !sections => bail!("--backend: missing (HOST:PORT), and no --config gives a proxy"),
        None if !a.route.is_empty() => {
            bail!("--route: only with --backend (the proxies of --config have their own)")
        }
        None => {}
    }
    if let Some(i) = &ini {
        let path = a
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for (name, section) in &i.proxies {
            proxies.push(
                proxy::config::ini_proxy(&path, name, section, &i.options, timeout)
                    .map_err(|e| anyhow!(e))?,
            );
        }
    }
    proxies.extend(from_json);
    let http =
        a.http || file("http").is_some_and(|h| h == "true" || h == "1") || json_http.is_some();
    let http = http.then(|| match (&a.http_host, a.http_port, &json_http) {
        (None, None, Some(addr)) => addr.clone(),
        (host, port, _) => format!(
            "{}:{}",
            host.clone()
                .or_else(|| file("http_host"))
                .unwrap_or_else(|| "localhost".into()),
            port.map(|p| p.to_string())
                .or_else(|| file("http_port"))
                .unwrap_or_else(|| "8080".into())
        ),
    });
    Ok(proxy::Options { proxies, http })
}

fn timeout(secs: Option<f64>) -> Result<Duration> {
    let t = secs.unwrap_or(30.0);
    if !(t.is_finite() && t > 0.0) {
        bail!("--timeout {t}: must be seconds above 0");
    }
    Ok(Duration::from_secs_f64(t))
}
