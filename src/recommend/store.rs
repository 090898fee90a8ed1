//! The recommender's data beside the KB (sqlx, SQLite): the catalogue (`rec_items`, with each
//! item's embedding and the model that made it), customer events (`rec_events`, append-only,
//! consult events with their text's embedding) and customers (`rec_customers`: tier, locale).
//! Every batch — an import, a list of events — is one transaction: all of it or none.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use utoipa::ToSchema;

use crate::kb::import::Problem;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rec_items (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    title_en TEXT,
    description TEXT NOT NULL,
    description_en TEXT,
    categories TEXT NOT NULL,
    price REAL,
    active INTEGER NOT NULL,
    embedding BLOB,
    embedding_model TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rec_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    item_id TEXT,
    text TEXT,
    value REAL,
    ts INTEGER NOT NULL,
    faq_id TEXT,
    topic TEXT,
    embedding BLOB,
    embedding_model TEXT
);
CREATE INDEX IF NOT EXISTS rec_events_customer ON rec_events(customer_id, ts, seq);
CREATE TABLE IF NOT EXISTS rec_customers (
    id TEXT PRIMARY KEY,
    tier TEXT,
    locale TEXT,
    updated_at INTEGER NOT NULL
);
";

/// The columns of an item, for `RecStore::item_of`.
macro_rules! item_select {
    () => {
        "SELECT id, title, title_en, description, description_en, categories, price, active,
         embedding, embedding_model, created_at, updated_at FROM rec_items"
    };
}

/// A catalogue item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// 1–128 characters without spaces, control or bidirectional-override characters.
    #[schema(schema_with = schema::external_id)]
    pub id: String,
    #[schema(schema_with = schema::title)]
    pub title: String,
    /// The English title, when the item has one (shown to English-speaking customers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::title_en)]
    pub title_en: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::description)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::description)]
    pub description_en: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::categories)]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0)]
    pub price: Option<f64>,
    /// Inactive items are kept (their history counts) but never recommended.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// What the OpenAPI document states of an item's fields.
mod schema {
    pub use crate::text::check::schema::external_id;
    use crate::text::check::schema::{list, string, text};
    use utoipa::openapi::{Array, Object};

    pub fn title() -> Object {
        string(
            1,
            super::MAX_TITLE_CHARS,
            true,
            "One line, at most 500 characters.",
        )
    }

    pub fn title_en() -> Object {
        string(
            0,
            super::MAX_TITLE_CHARS,
            true,
            "One line, at most 500 characters.",
        )
    }

    pub fn description() -> Object {
        text(
            super::MAX_DESCRIPTION_CHARS,
            "Tab and line breaks allowed; at most 10000 characters.",
        )
    }

    pub fn categories() -> Array {
        list(
            string(1, 64, true, "One line, at most 64 characters."),
            super::MAX_CATEGORIES,
            "At most 20 categories.",
        )
    }
}

pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_CATEGORIES: usize = 20;

/// Customer and item ids: 1–128 characters without spaces, control or bidirectional-override
/// characters (e-mail addresses and the ids of other systems pass as they are).
pub fn valid_id(id: &str) -> bool {
    let n = id.chars().count();
    (1..=128).contains(&n)
        && id
            .chars()
            .all(|c| !c.is_whitespace() && crate::text::check::allowed(c, false))
}

impl Item {
    /// Every problem with the item as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !valid_id(&self.id) {
            out.push((
                "id",
                format!(
                    "{:?} is not an id (1–128 characters, no spaces or control characters)",
                    self.id
                ),
            ));
        }
        if self.title.trim().is_empty() {
            out.push(("title", "is empty".into()));
        }
        for (field, text, max) in [
            ("title", Some(&self.title), MAX_TITLE_CHARS),
            ("title_en", self.title_en.as_ref(), MAX_TITLE_CHARS),
            (
                "description",
                Some(&self.description),
                MAX_DESCRIPTION_CHARS,
            ),
            (
                "description_en",
                self.description_en.as_ref(),
                MAX_DESCRIPTION_CHARS,
            ),
        ] {
            let Some(t) = text else { continue };
            if t.chars().count() > max {
                out.push((field, format!("has more than {max} characters")));
            } else if let Err(m) =
                crate::text::check::checked_chars(t, field.starts_with("description"))
            {
                out.push((field, m));
            }
        }
        if self.categories.len() > MAX_CATEGORIES {
            out.push((
                "categories",
                format!("more than {MAX_CATEGORIES} categories"),
            ));
        }
        if self
            .categories
            .iter()
            .any(|c| c.trim().is_empty() || c.chars().count() > 64)
        {
            out.push((
                "categories",
                "a category is empty or longer than 64 characters".into(),
            ));
        } else if let Some(m) = self
            .categories
            .iter()
            .find_map(|c| crate::text::check::checked_chars(c, false).err())
        {
            out.push(("categories", format!("a category {m}")));
        }
        if let Some(p) = self.price
            && !(p.is_finite() && p >= 0.0)
        {
            out.push(("price", format!("{p} is not a price (a number ≥ 0)")));
        }
        out
    }

    /// The text its embedding is made from: titles and descriptions in both languages.
    pub fn embedding_text(&self) -> String {
        [
            Some(self.title.as_str()),
            self.title_en.as_deref(),
            Some(self.description.as_str()),
            self.description_en.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|t| !t.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The title for a locale (`en` prefers `title_en`).
    pub fn title_for(&self, locale: &str) -> &str {
        match (&self.title_en, locale) {
            (Some(t), "en") => t,
            _ => &self.title,
        }
    }
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredItem {
    #[serde(flatten)]
    pub item: Item,
    /// Whether its embedding is from the serving model.
    pub embedded: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// Item files for `POST /v1/items:import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemFormat {
    /// One item object per line.
    Jsonl,
    /// Header `id,title,description,categories,price,active` (plus optional `title_en`,
    /// `description_en`); categories separated by `|`.
    Csv,
}

/// Parses and checks a whole item file; every problem comes back with its line.
pub fn parse_items(format: ItemFormat, body: &str) -> Result<Vec<Item>, Vec<Problem>> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let problem = |line: usize, field: Option<&str>, message: String| Problem {
        line,
        field: field.map(str::to_string),
        message,
    };
    match format {
        ItemFormat::Jsonl => {
            for (n, raw) in body.lines().enumerate() {
                let line = n + 1;
                if raw.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Item>(raw) {
                    Ok(it) => items.push((line, it)),
                    Err(e) => problems.push(problem(line, None, e.to_string())),
                }
            }
        }
        ItemFormat::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(body.as_bytes());
            let headers = match r.headers() {
                Ok(h) => h.clone(),
                Err(e) => return Err(vec![problem(1, None, e.to_string())]),
            };
            let col = |name: &str| headers.iter().position(|h| h == name);
            let (Some(id), Some(title)) = (col("id"), col("title")) else {
                return Err(vec![problem(
                    1,
                    None,
                    "the header needs at least `id` and `title` columns".into(),
                )]);
            };
            let known = [
                "id",
                "title",
                "title_en",
                "description",
                "description_en",
                "categories",
                "price",
                "active",
            ];
            if let Some(h) = headers.iter().find(|h| !known.contains(h)) {
                return Err(vec![problem(
                    1,
                    Some(h),
                    format!("unknown column (known: {})", known.join(", ")),
                )]);
            }
            for rec in r.records() {
                let rec = match rec {
                    Ok(x) => x,
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line() as usize);
                        problems.push(problem(line, None, e.to_string()));
                        continue;
                    }
                };
                let line = rec.position().map_or(0, |p| p.line() as usize);
                let get = |name: &str| col(name).and_then(|k| rec.get(k)).unwrap_or("");
                let opt = |name: &str| Some(get(name).to_string()).filter(|s| !s.is_empty());
                let price = match get("price") {
                    "" => None,
                    p => match p.parse::<f64>() {
                        Ok(x) => Some(x),
                        Err(_) => {
                            problems.push(problem(
                                line,
                                Some("price"),
                                format!("{p:?} is not a number"),
                            ));
                            continue;
                        }
                    },
                };
                let active = match get("active").to_ascii_lowercase().as_str() {
                    "" | "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => {
                        problems.push(problem(
                            line,
                            Some("active"),
                            format!("{other:?} is not true or false"),
                        ));
                        continue;
                    }
                };
                items.push((
                    line,
                    Item {
                        id: rec.get(id).unwrap_or("").to_string(),
                        title: rec.get(title).unwrap_or("").to_string(),
                        title_en: opt("title_en"),
                        description: get("description").to_string(),
                        description_en: opt("description_en"),
                        categories: get("categories")
                            .split('|')
                            .map(str::trim)
                            .filter(|c| !c.is_empty())
                            .map(str::to_string)
                            .collect(),
                        price,
                        active,
                    },
                ));
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (line, it) in &items {
        for (field, message) in it.validate() {
            problems.push(problem(*line, Some(field), message));
        }
        if let Some(first) = seen.insert(it.id.clone(), *line) {
            problems.push(problem(
                *line,
                Some("id"),
                format!("{:?} is also on line {first}", it.id),
            ));
        }
    }
    if items.is_empty() && problems.is_empty() {
        problems.push(problem(1, None, "no items".into()));
    }
    if problems.is_empty() {
        Ok(items.into_iter().map(|(_, i)| i).collect())
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

/// What customers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    View,
    Click,
    Purchase,
    /// A question asked (written by `/v1/chat` and `/v1/match` when a customer id is given).
    Consult,
    /// "Not interested": the item is not recommended to this customer again.
    Dismiss,
    /// `value` 1–5.
    Rating,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::View,
        EventType::Click,
        EventType::Purchase,
        EventType::Consult,
        EventType::Dismiss,
        EventType::Rating,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::View => "view",
            EventType::Click => "click",
            EventType::Purchase => "purchase",
            EventType::Consult => "consult",
            EventType::Dismiss => "dismiss",
            EventType::Rating => "rating",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Interactions with an item that the collaborative models learn from.
    pub fn is_interaction(self) -> bool {
        matches!(
            self,
            EventType::View | EventType::Click | EventType::Purchase | EventType::Rating
        )
    }
}

/// One event, checked and ready to store.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    pub customer_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Seconds since the Unix epoch.
    pub ts: i64,
    /// For consult events: the entry that answered, and its category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faq_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// An event as stored, with its embedding when it is a consult event that has one.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: Event,
    pub embedding: Option<Vec<f32>>,
}

/// A customer's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = CustomerAttributes)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::text::check::schema::tier)]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::text::check::schema::language)]
    pub locale: Option<String>,
}

pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A customer's events by type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub counts: std::collections::BTreeMap<String, u64>,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

/// Counts of an upsert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ItemSummary {
    pub created: usize,
    pub updated: usize,
}

#[derive(Clone)]
pub struct RecStore {
    pool: SqlitePool,
}

impl RecStore {
    pub async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Inserts or replaces `items` in one transaction. A changed item loses its embedding
    /// (it is made again); an unchanged text keeps it.
    pub async fn upsert_items(&self, items: &[Item]) -> Result<ItemSummary, sqlx::Error> {
        let now = crate::kb::entry::now_rfc3339();
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        let mut s = ItemSummary::default();
        for it in items {
            let old: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT title, description, title_en, description_en FROM rec_items WHERE id = ?",
            )
            .bind(&it.id)
            .fetch_optional(&mut *tx)
            .await?;
            let cats = serde_json::to_string(&it.categories).expect("strings serialise");
            match old {
                None => {
                    s.created += 1;
                    sqlx::query(
                        "INSERT INTO rec_items (id, title, title_en, description, description_en,
                         categories, price, active, created_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&it.id)
                    .bind(&it.title)
                    .bind(&it.title_en)
                    .bind(&it.description)
                    .bind(&it.description_en)
                    .bind(&cats)
                    .bind(it.price)
                    .bind(it.active)
                    .bind(&now)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                }
                Some((title, description, title_en, description_en)) => {
                    s.updated += 1;
                    let same_text = title == it.title
                        && description == it.description
                        && title_en == it.title_en
                        && description_en == it.description_en;
                    sqlx::query(
                        "UPDATE rec_items SET title = ?, title_en = ?, description = ?,
                         description_en = ?, categories = ?, price = ?, active = ?, updated_at = ?,
                         embedding = CASE WHEN ? THEN embedding END,
                         embedding_model = CASE WHEN ? THEN embedding_model END
                         WHERE id = ?",
                    )
                    .bind(&it.title)
                    .bind(&it.title_en)
                    .bind(&it.description)
                    .bind(&it.description_en)
                    .bind(&cats)
                    .bind(it.price)
                    .bind(it.active)
                    .bind(&now)
                    .bind(same_text)
                    .bind(same_text)
                    .bind(&it.id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(s)
    }

    /// Every item in id order, with its embedding when it was made by `model`.
    pub async fn items(
        &self,
        model: &str,
    ) -> Result<Vec<(StoredItem, Option<Vec<f32>>)>, sqlx::Error> {
        let rows = sqlx::query(concat!(item_select!(), " ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| Self::item_of(r, model)).collect())
    }

    /// One item (`embedded`: whether `model` made its embedding).
    pub async fn item(&self, id: &str, model: &str) -> Result<Option<StoredItem>, sqlx::Error> {
        let row = sqlx::query(concat!(item_select!(), " WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| Self::item_of(&r, model).0))
    }

    /// A `rec_items` row, with its embedding when `model` made it.
    fn item_of(r: &sqlx::sqlite::SqliteRow, model: &str) -> (StoredItem, Option<Vec<f32>>) {
        let emb: Option<Vec<u8>> = r.get("embedding");
        let emb_model: Option<String> = r.get("embedding_model");
        let emb = emb
            .filter(|_| emb_model.as_deref() == Some(model))
            .map(|b| from_blob(&b));
        let cats: String = r.get("categories");
        (
            StoredItem {
                item: Item {
                    id: r.get("id"),
                    title: r.get("title"),
                    title_en: r.get("title_en"),
                    description: r.get("description"),
                    description_en: r.get("description_en"),
                    categories: serde_json::from_str(&cats).unwrap_or_default(),
                    price: r.get("price"),
                    active: r.get("active"),
                },
                embedded: emb.is_some(),
                created_at: r.get("created_at"),
                updated_at: r.get("updated_at"),
            },
            emb,
        )
    }

    pub async fn item_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM rec_items")
            .fetch_one(&self.pool)
            .await
    }

    /// Ids that exist, of those asked.
    pub async fn existing_items(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, sqlx::Error> {
        let mut out = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT id FROM rec_items WHERE id IN ({marks})");
            // Only placeholders are formatted in; the ids are bound.
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    /// Deletes an item; its events stay (history is history). `false` when there was none.
    pub async fn delete_item(&self, id: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("DELETE FROM rec_items WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Items without an embedding from `model`: `(id, text)`.
    pub async fn items_to_embed(&self, model: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
        Ok(self
            .items(model)
            .await?
            .into_iter()
            .filter(|(_, e)| e.is_none())
            .map(|(s, _)| (s.item.id.clone(), s.item.embedding_text()))
            .collect())
    }

    pub async fn set_item_embeddings(
        &self,
        model: &str,
        rows: &[(String, Vec<f32>)],
    ) -> Result<(), sqlx::Error> {
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        for (id, v) in rows {
            sqlx::query("UPDATE rec_items SET embedding = ?, embedding_model = ? WHERE id = ?")
                .bind(to_blob(v))
                .bind(model)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Appends `events` (already checked) in one transaction, consult events with their
    /// embeddings where given.
    pub async fn add_events(
        &self,
        events: &[(Event, Option<Vec<f32>>)],
        model: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        for (e, emb) in events {
            sqlx::query(
                "INSERT INTO rec_events (customer_id, type, item_id, text, value, ts, faq_id, topic,
                 embedding, embedding_model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&e.customer_id)
            .bind(e.kind.as_str())
            .bind(&e.item_id)
            .bind(&e.text)
            .bind(e.value)
            .bind(e.ts)
            .bind(&e.faq_id)
            .bind(&e.topic)
            .bind(emb.as_deref().map(to_blob))
            .bind(emb.as_ref().map(|_| model))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Clicks and purchases with a time in `[from, to)` (Unix seconds): `(customer, type,
    /// item, ts)`, for attributing conversions to recommendations.
    pub async fn conversions_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String, String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT customer_id, type, item_id, ts FROM rec_events
             WHERE type IN ('click', 'purchase') AND item_id IS NOT NULL AND ts >= ? AND ts < ?
             ORDER BY ts, seq",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }

    pub async fn event_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM rec_events")
            .fetch_one(&self.pool)
            .await
    }

    pub async fn last_seq(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM rec_events")
            .fetch_one(&self.pool)
            .await
    }

    fn event_of(r: &sqlx::sqlite::SqliteRow, model: &str) -> StoredEvent {
        let kind: String = r.get("type");
        let emb: Option<Vec<u8>> = r.get("embedding");
        let emb_model: Option<String> = r.get("embedding_model");
        StoredEvent {
            seq: r.get("seq"),
            event: Event {
                customer_id: r.get("customer_id"),
                kind: EventType::parse(&kind).unwrap_or(EventType::View),
                item_id: r.get("item_id"),
                text: r.get("text"),
                value: r.get("value"),
                ts: r.get("ts"),
                faq_id: r.get("faq_id"),
                topic: r.get("topic"),
            },
            embedding: emb
                .filter(|_| emb_model.as_deref() == Some(model))
                .map(|b| from_blob(&b)),
        }
    }

    /// A customer's newest `limit` events, returned oldest first (by time, then arrival).
    pub async fn customer_events(
        &self,
        customer: &str,
        limit: usize,
        model: &str,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM rec_events WHERE customer_id = ? ORDER BY ts DESC, seq DESC LIMIT ?",
        )
        .bind(customer)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<StoredEvent> = rows.iter().map(|r| Self::event_of(r, model)).collect();
        out.reverse();
        Ok(out)
    }

    /// `(customer, item, value, ts, seq)` of every item interaction, in arrival order: what the
    /// collaborative models are trained on.
    pub async fn interactions(&self) -> Result<Vec<(String, String, f32, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT customer_id, item_id, value, ts, seq FROM rec_events
             WHERE type IN ('view', 'click', 'purchase', 'rating') AND item_id IS NOT NULL
             ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let v: Option<f64> = r.get("value");
                (
                    r.get("customer_id"),
                    r.get("item_id"),
                    v.unwrap_or(1.0) as f32,
                    r.get("ts"),
                    r.get("seq"),
                )
            })
            .collect())
    }

    /// Consult events without an embedding from `model`: `(seq, text)`, at most `limit`.
    pub async fn consults_to_embed(
        &self,
        model: &str,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, text FROM rec_events WHERE type = 'consult' AND text IS NOT NULL
             AND (embedding_model IS NULL OR embedding_model != ?) ORDER BY seq LIMIT ?",
        )
        .bind(model)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn set_event_embeddings(
        &self,
        model: &str,
        rows: &[(i64, Vec<f32>)],
    ) -> Result<(), sqlx::Error> {
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        for (seq, v) in rows {
            sqlx::query("UPDATE rec_events SET embedding = ?, embedding_model = ? WHERE seq = ?")
                .bind(to_blob(v))
                .bind(model)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// All of a customer's events by type, and the first and last event's time.
    pub async fn customer_counts(&self, id: &str) -> Result<Counts, sqlx::Error> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT type, COUNT(*), MIN(ts), MAX(ts) FROM rec_events WHERE customer_id = ?
             GROUP BY type",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut c = Counts::default();
        for (kind, n, first, last) in rows {
            c.counts.insert(kind, n as u64);
            c.first_seen = Some(c.first_seen.map_or(first, |f: i64| f.min(first)));
            c.last_seen = Some(c.last_seen.map_or(last, |l: i64| l.max(last)));
        }
        Ok(c)
    }

    pub async fn customer(&self, id: &str) -> Result<Option<Customer>, sqlx::Error> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT tier, locale FROM rec_customers WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(tier, locale)| Customer { tier, locale }))
    }

    /// Removes everything stored about a customer: (events, whether a customer row existed).
    pub async fn erase_customer(&self, id: &str) -> Result<(u64, bool), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query("DELETE FROM rec_events WHERE customer_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let customer = sqlx::query("DELETE FROM rec_customers WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((events, customer > 0))
    }

    /// Removes events older than `cutoff` (Unix seconds); how many.
    pub async fn purge_events_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query("DELETE FROM rec_events WHERE ts < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Sets the attributes given (`None` keeps what is stored).
    pub async fn upsert_customers(&self, rows: &[(String, Customer)]) -> Result<(), sqlx::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        for (id, c) in rows {
            sqlx::query(
                "INSERT INTO rec_customers (id, tier, locale, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET tier = COALESCE(excluded.tier, tier),
                 locale = COALESCE(excluded.locale, locale), updated_at = excluded.updated_at",
            )
            .bind(id)
            .bind(&c.tier)
            .bind(&c.locale)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_files_are_checked_whole_with_line_numbers() {
        let ok = "{\"id\": \"p1\", \"title\": \"手机壳\", \"categories\": [\"phones\"], \"price\": 29}\n\
                  {\"id\": \"p2\", \"title\": \"Case\", \"active\": false}\n";
        let items = parse_items(ItemFormat::Jsonl, ok).unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].active && !items[1].active);
        let bad = "{\"id\": \"p1\", \"title\": \"a\"}\n{\"id\": \"bad id\", \"title\": \"\"}\n\
                   {\"id\": \"p1\", \"title\": \"b\", \"price\": -1}\n{\"id\": \"p4\", \"colour\": 1}\n";
        let problems = parse_items(ItemFormat::Jsonl, bad).unwrap_err();
        let at = |line: usize| {
            problems
                .iter()
                .filter(|p| p.line == line)
                .map(|p| p.field.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(at(2), ["id", "title"], "{problems:?}");
        assert!(at(3).contains(&"price".to_string()) && at(3).contains(&"id".to_string()));
        assert_eq!(at(4).len(), 1, "unknown field: {problems:?}");
        let csv =
            "id,title,categories,price,active\np1,杯子,home|kitchen,19.9,true\np2,,home,abc,true\n";
        let problems = parse_items(ItemFormat::Csv, csv).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            (problems[0].line, problems[0].field.as_deref()),
            (3, Some("price"))
        );
        let problems = parse_items(ItemFormat::Csv, "id,title,price\np1,,5\n").unwrap_err();
        assert_eq!(
            (problems[0].line, problems[0].field.as_deref()),
            (2, Some("title"))
        );
    }

    #[test]
    fn ids_are_anything_printable_without_spaces() {
        assert!(valid_id("ana@example.com") && valid_id("用户-42") && valid_id("p0001"));
        assert!(!valid_id("") && !valid_id("a b") && !valid_id("a\tb"));
        assert!(valid_id(&"x".repeat(128)) && !valid_id(&"x".repeat(129)));
    }

    #[test]
    fn blobs_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(from_blob(&to_blob(&v)), v);
    }
}
