//! Recommendations: `/v1/items` (the catalogue), `/v1/events`, `/v1/customers/{id}`
//! (attributes and profile) and `/v1/recommend`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::{ApiPath, ApiQuery, ApiText};
use crate::error::Error;
use crate::recommend::serving::{
    EventIn, Profile, RecommendRequest, RecommendResponse, check_event, now_secs,
};
use crate::recommend::store::{
    Customer, Event, Item, ItemFormat, ItemSummary, StoredItem, parse_items,
};

/// At most this many events per `POST /v1/events`.
pub const MAX_EVENTS: usize = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemListParams {
    #[serde(default)]
    pub offset: Option<usize>,
    /// At most 1000 (default 100).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemList {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<StoredItem>,
}

/// The catalogue, by id.
#[utoipa::path(get, path = "/v1/items", tag = "recommendations", params(ItemListParams),
    responses((status = 200, body = ItemList)))]
pub async fn list_items(
    State(s): State<SharedState>,
    ApiQuery(p): ApiQuery<ItemListParams>,
) -> Result<Json<ItemList>, Error> {
    let all: Vec<StoredItem> = s
        .recommender
        .store
        .items(&s.model_version())
        .await
        .map_err(Error::storage)?
        .into_iter()
        .map(|(i, _)| i)
        .filter(|i| {
            p.category
                .as_ref()
                .is_none_or(|c| i.item.categories.contains(c))
        })
        .collect();
    let offset = p.offset.unwrap_or(0);
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(ItemList {
        total: all.len(),
        offset,
        items: all.into_iter().skip(offset).take(limit).collect(),
    }))
}

async fn find_item(s: &crate::core::Kefu, id: &str) -> Result<StoredItem, Error> {
    s.recommender
        .store
        .item(id, &s.model_version())
        .await
        .map_err(Error::storage)?
        .ok_or_else(|| Error::NotFound(format!("item {id:?} does not exist")))
}

/// One item.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "recommendations", params(("id" = String, Path)),
    responses((status = 200, body = StoredItem), (status = 404, body = ErrorBody)))]
pub async fn get_item(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StoredItem>, Error> {
    Ok(Json(find_item(&s, &id).await?))
}

/// Adds an item or replaces the one with its id (201 when new). Its title and description are
/// embedded before the answer, so it can be recommended at once.
#[utoipa::path(post, path = "/v1/items", tag = "recommendations", request_body = Item, responses(
    (status = 201, body = StoredItem), (status = 200, body = StoredItem), (status = 422, body = ErrorBody)))]
pub async fn upsert_item(
    State(s): State<SharedState>,
    ApiJson(item): ApiJson<Item>,
) -> Result<(StatusCode, Json<StoredItem>), Error> {
    let problems = item.validate();
    if !problems.is_empty() {
        return Err(Error::Invalid(
            problems
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let summary = s
        .recommender
        .store
        .upsert_items(std::slice::from_ref(&item))
        .await
        .map_err(Error::storage)?;
    s.refresh_catalogue().await?;
    let status = if summary.created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(find_item(&s, &item.id).await?)))
}

/// Removes an item from the catalogue (its events stay in customers' histories).
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "recommendations", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_item(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Error> {
    if !s
        .recommender
        .store
        .delete_item(&id)
        .await
        .map_err(Error::storage)?
    {
        return Err(Error::NotFound(format!("item {id:?} does not exist")));
    }
    s.refresh_catalogue().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemFormatParam {
    /// `jsonl` or `csv` (default: from Content-Type).
    #[serde(default)]
    pub format: Option<ItemFormat>,
}

/// Imports items from JSONL or CSV: every line is checked first and all problems are reported
/// with their line (422, nothing imported); then all items are written in one transaction and
/// embedded (progress in the server log).
#[utoipa::path(post, path = "/v1/items:import", tag = "recommendations", params(ItemFormatParam),
    request_body(description = "JSONL (one item per line) or CSV (the Content-Type or `format` says which)",
        content((String = "application/x-ndjson"), (String = "text/csv"))),
    responses((status = 200, body = ItemSummary), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_items(
    State(s): State<SharedState>,
    ApiQuery(p): ApiQuery<ItemFormatParam>,
    headers: HeaderMap,
    ApiText(body): ApiText,
) -> Result<Json<ItemSummary>, Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match p.format {
        Some(f) => f,
        None if ct.starts_with("text/csv") => ItemFormat::Csv,
        None if ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json") => {
            ItemFormat::Jsonl
        }
        None => {
            return Err(Error::UnsupportedMediaType(format!(
                "cannot tell the format from Content-Type {ct:?}: use ?format=jsonl|csv"
            )));
        }
    };
    let items = parse_items(format, &body).map_err(Error::InvalidImport)?;
    tracing::info!(items = items.len(), "importing items");
    let summary = s
        .recommender
        .store
        .upsert_items(&items)
        .await
        .map_err(Error::storage)?;
    s.refresh_catalogue().await?;
    tracing::info!(?summary, "items imported and embedded");
    Ok(Json(summary))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    #[schema(min_items = 1, max_items = 10_000)]
    pub events: Vec<EventIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    pub accepted: usize,
}

/// Records customer events. The batch is checked whole (types, ids, known items, timestamps;
/// 422 naming every problem, nothing stored) and stored in one transaction. Profiles and
/// recommendations reflect it at once.
#[utoipa::path(post, path = "/v1/events", tag = "recommendations", request_body = EventBatch, responses(
    (status = 200, body = EventsAccepted), (status = 422, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn post_events(
    State(s): State<SharedState>,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<Json<EventsAccepted>, Error> {
    if batch.events.is_empty() {
        return Err(Error::EmptyInput("events is empty".into()));
    }
    if batch.events.len() > MAX_EVENTS {
        return Err(Error::TooLarge(format!(
            "{} events; at most {MAX_EVENTS} per request",
            batch.events.len()
        )));
    }
    let now = now_secs();
    let mut problems = Vec::new();
    let mut events = Vec::new();
    for (k, e) in batch.events.iter().enumerate() {
        match check_event(e, now, s.config.limits.max_input_chars) {
            Ok(ev) => events.push((k, ev)),
            Err(p) => problems.extend(p.into_iter().map(|(f, m)| format!("events[{k}].{f}: {m}"))),
        }
    }
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e.item_id.as_deref())
        .collect();
    let known = s
        .recommender
        .store
        .existing_items(&ids)
        .await
        .map_err(Error::storage)?;
    for (k, e) in &events {
        if let Some(id) = &e.item_id
            && !known.contains(id)
        {
            problems.push(format!(
                "events[{k}].item_id: item {id:?} is not in the catalogue"
            ));
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(50);
        return Err(Error::Invalid(format!(
            "{n} problem(s), nothing was stored: {}",
            problems.join("; ")
        )));
    }
    let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
    s.record_events(events).await?;
    Ok(Json(EventsAccepted {
        accepted: batch.events.len(),
    }))
}

pub use crate::core::checked_customer_id;

/// Erases everything kefu keeps about a customer (PIPL/GDPR erasure): events, profile,
/// feedback and conversations; the recommendation model is retrained without them. Says what
/// it removed; erasing an unknown customer removes nothing and is not an error.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "recommendations", params(("id" = String, Path, description = "The customer's id")),
    responses((status = 200, body = crate::core::privacy::Erased), (status = 422, body = ErrorBody)))]
pub async fn erase_customer(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<crate::core::privacy::Erased>, Error> {
    Ok(Json(s.erase_customer(&id).await?))
}

/// Sets a customer's tier and locale (fields left out keep their value).
#[utoipa::path(put, path = "/v1/customers/{id}", tag = "recommendations", params(("id" = String, Path)),
    request_body = Customer, responses((status = 200, body = Customer), (status = 422, body = ErrorBody)))]
pub async fn put_customer(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(c): ApiJson<Customer>,
) -> Result<Json<Customer>, Error> {
    checked_customer_id("customer id", &id)?;
    s.checked_tier("tier", c.tier.as_deref())?;
    // Stored as the routing policy spells it, so that `GOLD` and `gold` are one tier.
    let mut c = c;
    if let Some(t) = &c.tier
        && let Some(known) = s
            .config
            .routing
            .tiers
            .iter()
            .find(|k| k.eq_ignore_ascii_case(t))
    {
        c.tier = Some(known.clone());
    }
    if let Some(l) = &c.locale
        && !matches!(l.as_str(), "zh" | "en")
    {
        return Err(Error::Invalid(format!("locale: {l:?} is not zh or en")));
    }
    let store = &s.recommender.store;
    store
        .upsert_customers(&[(id.clone(), c)])
        .await
        .map_err(Error::storage)?;
    Ok(Json(
        store
            .customer(&id)
            .await
            .map_err(Error::storage)?
            .unwrap_or_default(),
    ))
}

/// What kefu knows about a customer: tier, time-decayed interests, recent purchases and
/// questions, event counts, first and last seen. 404 for a customer it has never seen.
#[utoipa::path(get, path = "/v1/customers/{id}/profile", tag = "recommendations", params(("id" = String, Path)),
    responses((status = 200, body = Profile), (status = 404, body = ErrorBody)))]
pub async fn profile(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Profile>, Error> {
    s.recommender
        .profile(&id, &s.model_version())
        .await
        .map_err(Error::storage)?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("customer {id:?} has no events or attributes")))
}

/// Items for a customer, each with a score and a reason. Purchased, dismissed and inactive
/// items are left out; an unknown customer gets cold-start recommendations (the context and
/// what is popular).
#[utoipa::path(post, path = "/v1/recommend", tag = "recommendations", request_body = RecommendRequest, responses(
    (status = 200, body = RecommendResponse), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn recommend(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<RecommendRequest>,
) -> Result<Json<RecommendResponse>, Error> {
    Ok(Json(s.recommend_request(req).await?))
}
