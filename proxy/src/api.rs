//! The control API (`--http`), as Vaurien's: `GET/PUT /behavior`, `GET /behaviors`,
//! `GET/PUT /backend`, and ours, `GET /stats`. vaurienclient sends its `PUT` bodies as JSON
//! without a Content-Type: bodies are read as text and parsed whatever the header says.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{extract::State as S, Json, Router};
use serde_json::{json, Value};

use crate::behavior::{Behavior, Mix, NAMES};
use crate::relay::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/behavior", get(behavior).put(set_behavior))
        .route(
            "/behaviors",
            get(|| async { Json(json!({"behaviors": NAMES})) }),
        )
        .route("/backend", get(backend).put(set_backend))
        .route("/stats", get(stats))
        .with_state(state)
}

fn error(field: &str, description: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errors": [{"name": field, "location": "body", "description": description}]})),
    )
        .into_response()
}

async fn behavior(S(s): S<Arc<State>>) -> Json<Value> {
    let mix = s.mix.read().unwrap_or_else(|e| e.into_inner()).clone();
    let details: Vec<Value> = mix
        .0
        .iter()
        .map(|(p, b)| {
            let mut v = b.json();
            v["percent"] = json!(p);
            v
        })
        .collect();
    Json(json!({"behavior": mix.name(), "details": details}))
}

/// `{"name": "delay", "sleep": 0.3, …}`: from now on every call draws that behaviour, with
/// those options (and the behaviour's defaults for the rest, never the command line's).
async fn set_behavior(S(s): S<Arc<State>>, body: String) -> Response {
    let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(&body) else {
        return error(
            "body",
            "the body must be a JSON object: {\"name\": …, options…}".into(),
        );
    };
    let Some(Value::String(name)) = v.remove("name") else {
        return error(
            "name",
            format!("no behavior name; the behaviors are {}", NAMES.join(", ")),
        );
    };
    let options: BTreeMap<String, String> = v
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    match Behavior::build(&name, &options) {
        Ok(b) => {
            *s.mix.write().unwrap_or_else(|e| e.into_inner()) = Mix::one(b);
            Json(json!({"status": "ok"})).into_response()
        }
        Err(e) if !NAMES.contains(&name.as_str()) => error("name", e.0),
        Err(e) => error("options", e.0),
    }
}

async fn backend(S(s): S<Arc<State>>) -> Json<Value> {
    Json(json!({"backend": *s.backend.read().unwrap_or_else(|e| e.into_inner())}))
}

async fn set_backend(S(s): S<Arc<State>>, body: String) -> Response {
    let backend = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(v)) => v.get("backend").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    match backend.filter(|b| {
        b.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    }) {
        Some(b) => {
            *s.backend.write().unwrap_or_else(|e| e.into_inner()) = b;
            Json(json!({"status": "ok"})).into_response()
        }
        None => error("backend", "give {\"backend\": \"HOST:PORT\"}".into()),
    }
}

async fn stats(S(s): S<Arc<State>>) -> Json<Value> {
    let applied = s.applied.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(json!({"calls": s.calls.load(std::sync::atomic::Ordering::Relaxed), "behaviors": applied}))
}
