//! The control API (`--http`). Vaurien's routes act on the first proxy: `GET/PUT /behavior`,
//! `GET /behaviors`, `GET/PUT /backend`. Ours: `GET/PUT /routes`, `GET /stats`, `GET /proxies`,
//! the same per proxy under `/proxies/NAME/…`, and `GET /metrics` (Prometheus text).
//!
//! vaurienclient sends its `PUT` bodies as JSON without a Content-Type: bodies are read as text
//! and parsed whatever the header says.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State as S};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::behavior::{Mix, NAMES};
use crate::state::{self, Proxy};

type All = Arc<Vec<Arc<Proxy>>>;

pub fn router(proxies: All) -> Router {
    Router::new()
        .route(
            "/behavior",
            get(|s: S<All>| on_first(s, get_behavior))
                .put(|s: S<All>, b: String| on_first_put(s, b, put_behavior)),
        )
        .route(
            "/behaviors",
            get(|| async { Json(json!({"behaviors": NAMES})) }),
        )
        .route(
            "/backend",
            get(|s: S<All>| on_first(s, get_backend))
                .put(|s: S<All>, b: String| on_first_put(s, b, put_backend)),
        )
        .route(
            "/routes",
            get(|s: S<All>| on_first(s, get_routes))
                .put(|s: S<All>, b: String| on_first_put(s, b, put_routes)),
        )
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/proxies", get(list))
        .route(
            "/proxies/{name}",
            get(|s: S<All>, n: Path<String>| on_named(s, n, describe)),
        )
        .route(
            "/proxies/{name}/behavior",
            get(|s: S<All>, n: Path<String>| on_named(s, n, get_behavior))
                .put(|s: S<All>, n: Path<String>, b: String| on_named_put(s, n, b, put_behavior)),
        )
        .route(
            "/proxies/{name}/backend",
            get(|s: S<All>, n: Path<String>| on_named(s, n, get_backend))
                .put(|s: S<All>, n: Path<String>, b: String| on_named_put(s, n, b, put_backend)),
        )
        .route(
            "/proxies/{name}/routes",
            get(|s: S<All>, n: Path<String>| on_named(s, n, get_routes))
                .put(|s: S<All>, n: Path<String>, b: String| on_named_put(s, n, b, put_routes)),
        )
        .route(
            "/proxies/{name}/stats",
            get(|s: S<All>, n: Path<String>| on_named(s, n, |p| Json(p.stats()).into_response())),
        )
        .with_state(proxies)
}

async fn on_first(S(all): S<All>, f: fn(&Proxy) -> Response) -> Response {
    f(&all[0])
}

async fn on_first_put(S(all): S<All>, body: String, f: fn(&Proxy, &str) -> Response) -> Response {
    f(&all[0], &body)
}

fn named<'a>(all: &'a All, name: &str) -> Result<&'a Proxy, Box<Response>> {
    all.iter().find(|p| p.name == name).map(|p| &**p).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "error", "errors": [{"name": "proxy", "location": "path",
                "description": format!("no proxy {name:?}; the proxies are {}", names.join(", "))}]})),
        )
            .into_response()
            .into()
    })
}

async fn on_named(
    S(all): S<All>,
    Path(name): Path<String>,
    f: impl Fn(&Proxy) -> Response,
) -> Response {
    match named(&all, &name) {
        Ok(p) => f(p),
        Err(r) => *r,
    }
}

async fn on_named_put(
    S(all): S<All>,
    Path(name): Path<String>,
    body: String,
    f: fn(&Proxy, &str) -> Response,
) -> Response {
    match named(&all, &name) {
        Ok(p) => f(p, &body),
        Err(r) => *r,
    }
}

/// Vaurien's error shape, which vaurienclient reads.
fn error(field: &str, description: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errors": [{"name": field, "location": "body", "description": description}]})),
    )
        .into_response()
}

fn bad(field: &str, description: String) -> Box<Response> {
    Box::new(error(field, description))
}

fn ok() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

fn get_behavior(p: &Proxy) -> Response {
    let mix = p.plan().default;
    Json(json!({"behavior": mix.name(), "details": mix.details()})).into_response()
}

/// `{"name": "delay", "sleep": 0.3, …}`: from now on every call not on a route draws that
/// behaviour, with those options (and the behaviour's defaults for the rest, never the command
/// line's). `{"name": "5:error,10:delay", "options": {…}}` sets a mix.
fn put_behavior(p: &Proxy, body: &str) -> Response {
    match behavior_of(body) {
        Ok(mix) => {
            p.set_default(mix);
            ok()
        }
        Err(r) => *r,
    }
}

/// The mix a `PUT /behavior` body asks for, or the 400 to answer.
pub fn behavior_of(body: &str) -> Result<Mix, Box<Response>> {
    let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(body) else {
        return Err(bad(
            "body",
            "the body must be a JSON object: {\"name\": …, options…}".into(),
        ));
    };
    let Some(Value::String(name)) = v.remove("name") else {
        return Err(bad(
            "name",
            format!("no behavior name; the behaviors are {}", NAMES.join(", ")),
        ));
    };
    state::mix_json(&name, &v).map_err(|(field, e)| bad(field, e.0))
}

fn get_backend(p: &Proxy) -> Response {
    Json(json!({"backend": p.backend()})).into_response()
}

fn put_backend(p: &Proxy, body: &str) -> Response {
    let backend = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(v)) => v.get("backend").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    match backend.filter(|b| {
        b.rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    }) {
        Some(b) => {
            p.set_backend(b);
            ok()
        }
        None => error("backend", "give {\"backend\": \"HOST:PORT\"}".into()),
    }
}

fn get_routes(p: &Proxy) -> Response {
    let plan = p.plan();
    let routes: Vec<Value> = plan.routes.iter().map(state::route_to_json).collect();
    Json(json!({"routes": routes, "default": plan.default.name()})).into_response()
}

/// `[{"method", "path", "client", "behavior", "options"}, …]` (or `{"routes": […]}`): replaces
/// the routes, the default kept.
fn put_routes(p: &Proxy, body: &str) -> Response {
    let list = match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(Value::Object(mut o)) if o.get("routes").is_some_and(Value::is_array) => {
            match o.remove("routes") {
                Some(Value::Array(a)) => a,
                _ => unreachable!("checked above"),
            }
        }
        _ => {
            return error(
                "routes",
                "give [{\"path\": \"/api\", \"behavior\": \"50:error\"}, …]".into(),
            )
        }
    };
    let mut routes = Vec::new();
    for r in &list {
        match state::route_json(r) {
            Ok(r) => routes.push(r),
            Err(e) => return error("routes", e.0),
        }
    }
    let mut plan = p.plan();
    plan.routes = routes;
    p.set_plan(plan);
    ok()
}

fn describe(p: &Proxy) -> Response {
    Json(summary(p)).into_response()
}

fn summary(p: &Proxy) -> Value {
    json!({"name": p.name, "listen": p.listen.to_string(), "backend": p.backend(),
        "protocol": p.protocol.name(), "behavior": p.plan().default.name()})
}

async fn list(S(all): S<All>) -> Json<Value> {
    Json(json!({"proxies": all.iter().map(|p| summary(p)).collect::<Vec<_>>()}))
}

/// The first proxy's stats (as with one proxy), and every proxy's under `proxies`.
async fn stats(S(all): S<All>) -> Json<Value> {
    let mut v = all[0].stats();
    v["proxies"] = all
        .iter()
        .map(|p| (p.name.clone(), p.stats()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Json(v)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(S(all): S<All>) -> Response {
    let mut out = String::new();
    out.push_str(
        "# HELP oct_proxy_calls_total Calls relayed, by proxy, route and the behaviour drawn.\n",
    );
    out.push_str("# TYPE oct_proxy_calls_total counter\n");
    let per: Vec<_> = all.iter().map(|p| (p, p.counters())).collect();
    for (p, (calls, _)) in &per {
        for (route, behavior, n) in calls {
            let _ = writeln!(
                out,
                "oct_proxy_calls_total{{proxy=\"{}\",route=\"{}\",behavior=\"{behavior}\"}} {n}",
                escape(&p.name),
                escape(route)
            );
        }
    }
    out.push_str("# HELP oct_proxy_events_total Events that are not calls: backend refused or failed, bad messages.\n");
    out.push_str("# TYPE oct_proxy_events_total counter\n");
    for (p, (_, events)) in &per {
        for (event, n) in events {
            let _ = writeln!(
                out,
                "oct_proxy_events_total{{proxy=\"{}\",event=\"{event}\"}} {n}",
                escape(&p.name)
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
