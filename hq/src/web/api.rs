//! The routes: `/` (the page), `/api/v1/…` (docs/api.md), `/metrics`, `/report/…`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{Control, Shared};

const PAGE: &str = include_str!("page.html");

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/v1/run", get(run))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/turrets", get(turrets))
        .route("/api/v1/errors", get(errors))
        .route("/api/v1/thresholds", get(thresholds))
        .route("/api/v1/events", get(events))
        .route("/api/v1/start", post(start))
        .route("/api/v1/stop", post(stop))
        .route("/api/v1/shape", post(shape))
        .route("/metrics", get(metrics))
        .route("/report/{*path}", get(report))
        .with_state(shared)
}

type S = State<Arc<Shared>>;

fn read<T>(s: &Shared, f: impl FnOnce(&super::State) -> T) -> T {
    f(&s.state.lock().unwrap_or_else(|e| e.into_inner()))
}

async fn run(State(s): S) -> Json<Value> {
    Json(read(&s, |st| st.run.clone()))
}

async fn stats(State(s): S) -> Json<Value> {
    Json(read(&s, |st| json!({"intervals": st.stats})))
}

async fn turrets(State(s): S) -> Json<Value> {
    Json(read(&s, |st| st.turrets.clone()))
}

async fn errors(State(s): S) -> Json<Value> {
    Json(read(&s, |st| st.errors.clone()))
}

async fn thresholds(State(s): S) -> Json<Value> {
    Json(read(&s, |st| st.thresholds.clone()))
}

/// One update as the event stream sends it: the run, the last interval, turrets, errors,
/// thresholds.
pub fn event_json(st: &super::State) -> String {
    json!({
        "run": st.run,
        "point": st.stats.last(),
        "turrets": st.turrets,
        "errors": st.errors,
        "thresholds": st.thresholds,
    })
    .to_string()
}

/// Server-Sent Events: the whole state at once (with every interval so far), then each update.
async fn events(State(s): S) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.events.subscribe();
    let first = read(&s, |st| {
        let mut v: Value = serde_json::from_str(&event_json(st)).unwrap_or(Value::Null);
        v["intervals"] = json!(st.stats);
        v.to_string()
    });
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        if let Some(f) = first {
            return Some((Ok(Event::default().data(f)), (None, rx)));
        }
        loop {
            match rx.recv().await {
                Ok(text) => return Some((Ok(Event::default().data(text)), (None, rx))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A mutating call's token check (`Some`: the refusal): `Authorization: Bearer T` or `X-Oct-Token: T`, never a
/// cookie.
fn refused(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(want) = &s.token else { return None };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-oct-token").and_then(|v| v.to_str().ok()));
    // Compared in constant time: the token is the only thing between a stranger and the run.
    let ok = given.is_some_and(|g| {
        g.len() == want.len()
            && g.bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        None
    } else {
        Some((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "this call needs the dashboard's token: `Authorization: Bearer TOKEN` or `X-Oct-Token: TOKEN`"})),
        )
            .into_response())
    }
}

fn send(s: &Shared, c: Control) -> Response {
    let sent = s
        .control
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(c)
        .is_ok();
    if sent {
        (StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Json(json!({"error": "the test is over"})),
        )
            .into_response()
    }
}

async fn start(State(s): S, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    send(&s, Control::Start)
}

async fn stop(State(s): S, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    send(&s, Control::Stop)
}

async fn shape(State(s): S, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let bad = |why: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response();
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return bad("the body must be JSON: {\"cannons\": N} or {\"rate\": R}");
    };
    let cannons = v.get("cannons").map(|c| c.as_u64());
    let rate = v
        .get("rate")
        .map(|r| r.as_f64().filter(|r| *r > 0.0 && r.is_finite()));
    match (cannons, rate) {
        (Some(Some(c)), None) if c >= 1 => send(
            &s,
            Control::Shape {
                cannons: Some(c),
                rate: None,
            },
        ),
        (None, Some(Some(r))) => send(
            &s,
            Control::Shape {
                cannons: None,
                rate: Some(r),
            },
        ),
        _ => bad("give one of {\"cannons\": N} (N ≥ 1) or {\"rate\": R} (R > 0)"),
    }
}

async fn metrics(State(s): S) -> Response {
    let text = read(&s, |st| st.metrics.clone());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The report's files (results.html, graphs/…), once written; nothing outside the results
/// folder.
async fn report(State(s): S, Path(path): Path<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such report file").into_response();
    let Ok(root) = s.results_dir.canonicalize() else {
        return not_found();
    };
    let Ok(file) = root.join(&path).canonicalize() else {
        return not_found();
    };
    if !file.starts_with(&root) || !file.is_file() {
        return not_found();
    }
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => not_found(),
    }
}
