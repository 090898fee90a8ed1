//! A stand-in for "the operator's own order system", plus a human agent desk.
//!
//! kefu answers questions itself, but some conversations need the shop's own
//! back end: its demo dialog flows call this service over HTTP, JSON in and out.
//!
//! - `order_status` and `refund` call `GET /orders/{id}` and `POST /refunds`;
//! - `change_address` calls `PUT /orders/{id}/address`;
//! - `create_ticket` calls `POST /tickets`;
//! - hand-offs to a human agent are posted to `/desk/handoffs`, the webhook of
//!   an agent desk, which this example also pretends to be.
//!
//! State lives in memory (seeded with five orders at start) and is lost on exit.
//! Errors are `{"error": {"code": "...", "message": "..."}}`. `--fail-handoffs N`
//! and `--delay-ms N` make the service misbehave on purpose, to show the
//! caller's retries and timeouts.
//!
//! ```text
//! cargo run --release --example order_system -- --addr 127.0.0.1:8090
//! ```
//!
//! The first line on stdout is always `listening on ADDR` (useful with port 0);
//! each request is logged to stderr as one line.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use clap::Parser;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Example order system and agent desk for kefu's demo flows")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "ORDER_SYSTEM_ADDR", default_value = "127.0.0.1:8090")]
    addr: String,
    /// Answer the first N POSTs to /desk/handoffs with 503.
    #[arg(long, default_value_t = 0)]
    fail_handoffs: u32,
    /// Delay every /orders and /refunds reply by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[derive(Serialize)]
struct Refund {
    refund_id: String,
    order_id: String,
    status: &'static str,
    amount: f64,
    reason: String,
    eta_days: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct Handoff {
    idempotency_key: Option<String>,
    body: Value,
}

/// Idempotency-Key → (request as received, response as first sent).
type Replays = HashMap<String, (Value, Value)>;

#[derive(Default)]
struct Db {
    orders: HashMap<String, Value>,
    refunds: Vec<Refund>,
    refund_keys: Replays,
    tickets: Vec<Value>,
    ticket_keys: Replays,
    handoffs: Vec<Handoff>,
    handoff_failures_left: u32,
}

struct AppState {
    db: Mutex<Db>,
    delay: Duration,
}

type Shared = Arc<AppState>;

impl AppState {
    fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.1, "message": self.2}});
        (self.0, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError(status, code, message.into())
}

fn invalid(message: impl Into<String>) -> ApiError {
    err(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn reply(status: StatusCode, body: impl Serialize) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// The seeded orders; `status_zh`, `status_en` and `total` are derived below.
fn seed_orders() -> HashMap<String, Value> {
    let orders = json!([
        {"order_id": "KF2026112001", "status": "shipped", "refundable": true,
         "carrier": "顺丰速运", "carrier_en": "SF Express", "tracking_no": "SF1234567890",
         "eta": "2026-12-02", "placed_at": "2026-11-28T10:12:00+08:00",
         "address": "上海市浦东新区张江路 88 号 3 栋 1201",
         "items": [
            {"title": "降噪蓝牙耳机", "title_en": "ANC earbuds", "qty": 1, "price": 299.0},
            {"title": "柯基毛绒抱枕", "title_en": "Corgi plush pillow", "qty": 1, "price": 89.0}]},
        {"order_id": "KF2026112002", "status": "delivered", "refundable": true,
         "carrier": "中通快递", "carrier_en": "ZTO Express", "tracking_no": "73100012345678",
         "eta": "2026-11-25", "placed_at": "2026-11-21T20:45:00+08:00",
         "address": "北京市海淀区中关村大街 27 号 5 层",
         "items": [
            {"title": "水豚毛绒公仔", "title_en": "Capybara plush", "qty": 2, "price": 69.9}]},
        {"order_id": "KF2026112003", "status": "processing", "refundable": true,
         "carrier": null, "carrier_en": null, "tracking_no": null,
         "eta": "2026-12-05", "placed_at": "2026-11-30T09:03:00+08:00",
         "address": "广州市天河区体育西路 103 号 702",
         "items": [
            {"title": "迷你充电宝", "title_en": "Mini power bank", "qty": 1, "price": 129.0},
            {"title": "快充数据线", "title_en": "USB-C cable", "qty": 2, "price": 19.9}]},
        {"order_id": "KF2026112004", "status": "cancelled", "refundable": false,
         "carrier": null, "carrier_en": null, "tracking_no": null,
         "eta": null, "placed_at": "2026-11-22T14:30:00+08:00",
         "address": "杭州市西湖区文三路 398 号 606",
         "items": [
            {"title": "智能手环", "title_en": "Smart band", "qty": 1, "price": 199.0}]},
        // Delivered long ago: past the 7-day return window, so no longer refundable.
        {"order_id": "KF2026112005", "status": "delivered", "refundable": false,
         "carrier": "圆通速递", "carrier_en": "YTO Express", "tracking_no": "YT8812345678901",
         "eta": "2026-10-01", "placed_at": "2026-09-27T18:20:00+08:00",
         "address": "深圳市南山区科技园南区 9 栋 1503",
         "items": [
            {"title": "熊猫毛绒玩具", "title_en": "Panda plush", "qty": 1, "price": 159.0}]},
    ]);
    let Value::Array(orders) = orders else {
        unreachable!()
    };
    let mut seeded = HashMap::new();
    for mut order in orders {
        let status_zh = match order["status"].as_str() {
            Some("processing") => "待发货",
            Some("shipped") => "已发货",
            Some("delivered") => "已签收",
            _ => "已取消",
        };
        // Sum in fen so that the total carries no floating-point residue.
        let items = order["items"].as_array().into_iter().flatten();
        let fen: f64 = items
            .map(|i| f64_of(&i["price"]) * 100.0 * f64_of(&i["qty"]))
            .sum();
        order["status_zh"] = json!(status_zh);
        order["status_en"] = order["status"].clone();
        order["total"] = json!(fen.round() / 100.0);
        seeded.insert(str_of(&order["order_id"]).to_owned(), order);
    }
    seeded
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn f64_of(value: &Value) -> f64 {
    value.as_f64().unwrap_or_default()
}

/// Malformed JSON is 400 `bad_json`; well-formed JSON of the wrong shape is 422.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid(e.to_string()),
        _ => err(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    })
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid(format!("`{field}` is required"))),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    let key = headers.get("idempotency-key")?.to_str().ok()?.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

/// A repeated key replays the first response, with 200; reusing it for another request is a 422.
fn replay(store: &Replays, key: Option<&str>, request: &Value) -> Option<ApiResult> {
    let (first_request, first_response) = store.get(key?)?;
    Some(if first_request == request {
        reply(StatusCode::OK, first_response)
    } else {
        Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ))
    })
}

fn canonical_id(id: &str) -> String {
    id.trim().to_ascii_uppercase()
}

fn unknown_order(id: &str) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("order {id} not found"),
    )
}

/// A mainland mobile number (11 digits starting with 1, optionally after `86`), or `+` and
/// 6–15 digits; spaces and dashes are dropped.
fn normalize_phone(phone: &str) -> Option<String> {
    let phone: String = phone.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = match phone.strip_prefix('+') {
        Some(rest) => (6..=15).contains(&rest.len()) && digits(rest),
        None => {
            let local = phone
                .strip_prefix("86")
                .filter(|r| r.len() == 11)
                .unwrap_or(&phone);
            local.len() == 11 && local.starts_with('1') && digits(local)
        }
    };
    ok.then_some(phone)
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn get_order(State(st): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = canonical_id(&id);
    let order = st.db().orders.get(&id).cloned();
    let order = order.ok_or_else(|| unknown_order(&id))?;
    reply(StatusCode::OK, order)
}

#[derive(Deserialize, Serialize)]
struct RefundRequest {
    order_id: Option<String>,
    reason: Option<String>,
    note: Option<String>,
}

async fn create_refund(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: RefundRequest = parse(&body)?;
    let order_id = canonical_id(required(&req.order_id, "order_id")?);
    let reason = required(&req.reason, "reason")?.to_owned();
    let (key, request) = (idempotency_key(&headers), json!(req));
    let mut db = st.db();
    if let Some(replayed) = replay(&db.refund_keys, key.as_deref(), &request) {
        return replayed;
    }
    let order = db
        .orders
        .get(&order_id)
        .ok_or_else(|| unknown_order(&order_id))?;
    if order["refundable"] != true {
        let status = str_of(&order["status"]);
        let why = format!("order {order_id} ({status}) cannot be refunded");
        return Err(err(StatusCode::CONFLICT, "not_refundable", why));
    }
    let refund = Refund {
        refund_id: format!("RF{:04}", db.refunds.len() + 1),
        amount: f64_of(&order["total"]),
        order_id,
        status: "submitted",
        reason,
        eta_days: 3,
        note: req.note.filter(|n| !n.trim().is_empty()),
    };
    let response = json!(refund);
    db.refunds.push(refund);
    if let Some(key) = key {
        db.refund_keys.insert(key, (request, response.clone()));
    }
    reply(StatusCode::CREATED, response)
}

async fn list_refunds(State(st): State<Shared>) -> Json<Value> {
    Json(json!({"refunds": st.db().refunds}))
}

#[derive(Deserialize)]
struct AddressRequest {
    address: Option<String>,
    phone: Option<String>,
}

async fn change_address(
    State(st): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: AddressRequest = parse(&body)?;
    let address = required(&req.address, "address")?.to_owned();
    let phone = normalize_phone(required(&req.phone, "phone")?)
        .ok_or_else(|| invalid("`phone` must be 11 digits starting with 1, or + and digits"))?;
    let id = canonical_id(&id);
    let mut db = st.db();
    let order = db.orders.get_mut(&id).ok_or_else(|| unknown_order(&id))?;
    if order["status"] != "processing" {
        let status = str_of(&order["status"]);
        let why = format!("order {id} is {status}; the address can no longer change");
        return Err(err(StatusCode::CONFLICT, "already_shipped", why));
    }
    order["address"] = json!(address);
    reply(
        StatusCode::OK,
        json!({"order_id": id, "address": address, "phone": phone, "status": "updated"}),
    )
}

#[derive(Deserialize, Serialize)]
struct TicketRequest {
    description: Option<String>,
    order_id: Option<String>,
    phone: Option<String>,
    category: Option<String>,
}

async fn create_ticket(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: TicketRequest = parse(&body)?;
    required(&req.description, "description")?;
    let (key, request) = (idempotency_key(&headers), json!(req));
    let mut db = st.db();
    if let Some(replayed) = replay(&db.ticket_keys, key.as_deref(), &request) {
        return replayed;
    }
    let ticket_id = format!("TK{:04}", db.tickets.len() + 1);
    let response = json!({"ticket_id": ticket_id, "status": "open"});
    db.tickets
        .push(json!({"ticket_id": ticket_id, "request": request}));
    if let Some(key) = key {
        db.ticket_keys.insert(key, (request, response.clone()));
    }
    reply(StatusCode::CREATED, response)
}

async fn receive_handoff(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    {
        let mut db = st.db();
        if db.handoff_failures_left > 0 {
            db.handoff_failures_left -= 1;
            let msg = "the agent desk is temporarily unavailable (--fail-handoffs)";
            return Err(err(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg));
        }
    }
    let body: Value = parse(&body)?;
    if !body.is_object() {
        return Err(invalid("the body must be a JSON object"));
    }
    let key = idempotency_key(&headers);
    let mut db = st.db();
    let duplicate = key.is_some() && db.handoffs.iter().any(|h| h.idempotency_key == key);
    if !duplicate {
        db.handoffs.push(Handoff {
            idempotency_key: key,
            body,
        });
    }
    reply(
        StatusCode::ACCEPTED,
        json!({"received": true, "duplicate": duplicate}),
    )
}

async fn list_handoffs(State(st): State<Shared>) -> Json<Value> {
    Json(json!({"handoffs": st.db().handoffs}))
}

/// Logs one line per request to stderr, and applies `--delay-ms` to /orders and /refunds.
async fn log_and_delay(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let started = Instant::now();
    if path == "/refunds" || path.starts_with("/orders/") {
        tokio::time::sleep(st.delay).await;
    }
    let response = next.run(req).await;
    let ms = started.elapsed().as_millis();
    eprintln!("{method} {path} {} {ms}ms", response.status().as_u16());
    response
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/address", put(change_address))
        .route("/refunds", post(create_refund).get(list_refunds))
        .route("/tickets", post(create_ticket))
        .route("/desk/handoffs", post(receive_handoff).get(list_handoffs))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            err(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "wrong method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), log_and_delay))
        .with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => _ = signal.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = Db {
        orders: seed_orders(),
        handoff_failures_left: args.fail_handoffs,
        ..Db::default()
    };
    let state = Arc::new(AppState {
        db: Mutex::new(db),
        delay: Duration::from_millis(args.delay_ms),
    });
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    eprintln!("order_system: shut down");
    Ok(())
}
