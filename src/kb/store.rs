//! The knowledge base on disk: SQLite (sqlx) in the data directory. Every write is one
//! transaction and bumps a revision number that indexes use to know they are stale.

use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use utoipa::ToSchema;

use super::document::Document;
use super::entry::FaqEntry;
use crate::matcher::Calibration;

pub const KB_FILE: &str = "kb.sqlite";

/// How long a write waits for another one (of this process or another, e.g. `kefu kb import`
/// beside a running server) to commit before it fails. Writes take turns: SQLite has one
/// writer at a time.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Begins a write transaction on `pool`, taking the database's write lock at once
/// (`BEGIN IMMEDIATE`) and waiting for it up to [`BUSY_TIMEOUT`]. A plain (deferred)
/// transaction that reads before it writes cannot wait: when another connection commits in
/// between, SQLite fails its first write with "database is locked" at once. Every transaction
/// that writes begins here.
pub async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("knowledge base storage: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored entry {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
}

/// An entry with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredEntry {
    #[serde(flatten)]
    pub entry: FaqEntry,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub revision: i64,
}

#[derive(Clone)]
pub struct KbStore {
    pool: SqlitePool,
}

fn now() -> i64 {
    crate::clock::now()
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS faqs (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    category TEXT,
    locale TEXT,
    enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS faqs_category ON faqs(category);
CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO kb_meta (key, value) VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

impl KbStore {
    /// Opens (creating if needed) the knowledge base in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(sqlx::Error::Io)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(data_dir.join(KB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit is on disk before it is acknowledged, power cuts included (NORMAL
            // would only survive the process dying).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// The database, shared with what is stored beside the KB (feedback).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Monotonic counter of committed changes.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT value FROM kb_meta WHERE key = 'revision'")
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM faqs")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEntry, StoreError> {
        Ok(StoredEntry {
            entry: Self::decode_body(row)?,
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        let row = sqlx::query("SELECT * FROM faqs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::decode).transpose()
    }

    /// Entries ordered by id, `limit` from `offset`, optionally of one category and with `q`
    /// in their id, questions or answers; and how many there are in all.
    pub async fn list(
        &self,
        offset: i64,
        limit: i64,
        category: Option<&str>,
        q: Option<&str>,
    ) -> Result<(Vec<StoredEntry>, i64), StoreError> {
        let pattern = crate::text::like_contains(q);
        const WHERE: &str =
            "(?1 IS NULL OR category = ?1) AND (?2 IS NULL OR id LIKE ?2 OR body LIKE ?2)";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM faqs WHERE {WHERE} ORDER BY id LIMIT ?3 OFFSET ?4"
        )))
        .bind(category)
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM faqs WHERE {WHERE}"
        )))
        .bind(category)
        .bind(&pattern)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        let entries = rows.iter().map(Self::decode).collect::<Result<_, _>>()?;
        Ok((entries, total))
    }

    /// Every entry, ordered by id.
    pub async fn all(&self) -> Result<Vec<StoredEntry>, StoreError> {
        Ok(self.list(0, i64::MAX, None, None).await?.0)
    }

    /// Inserts or replaces entries in one transaction; valid entries only (callers validate).
    pub async fn upsert_all(&self, entries: &[FaqEntry]) -> Result<ImportSummary, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let mut summary = ImportSummary::default();
        let t = now();
        for e in entries {
            let exists = sqlx::query("SELECT 1 FROM faqs WHERE id = ?")
                .bind(&e.id)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO faqs (id, body, category, locale, enabled, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT(id) DO UPDATE SET body = ?2, category = ?3, locale = ?4, enabled = ?5, updated_at = ?6",
            )
            .bind(&e.id)
            .bind(serde_json::to_string(e).expect("entry serialises"))
            .bind(&e.category)
            .bind(&e.locale)
            .bind(e.enabled)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            if exists.is_some() {
                summary.updated += 1;
            } else {
                summary.created += 1;
            }
        }
        summary.revision = Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Inserts or replaces documents in one transaction; true for each one that was new.
    pub async fn upsert_documents(&self, docs: &[Document]) -> Result<Vec<bool>, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let t = now();
        let mut created = Vec::new();
        for d in docs {
            let exists = sqlx::query("SELECT 1 FROM documents WHERE id = ?")
                .bind(&d.id)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO documents (id, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(id) DO UPDATE SET body = ?2, updated_at = ?3",
            )
            .bind(&d.id)
            .bind(serde_json::to_string(d).expect("document serialises"))
            .bind(t)
            .execute(&mut *tx)
            .await?;
            created.push(exists.is_none());
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn document(&self, id: &str) -> Result<Option<Document>, StoreError> {
        let row = sqlx::query("SELECT id, body FROM documents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::decode_body).transpose()
    }

    /// The FAQ entries and documents with these ids as stored now, in one query (ids that are
    /// gone are simply absent): what a match checks its candidates against.
    pub async fn current(
        &self,
        faq_ids: &[&str],
        document_ids: &[&str],
    ) -> Result<(Vec<FaqEntry>, Vec<Document>), StoreError> {
        let json = |ids: &[&str]| serde_json::to_string(ids).expect("strings serialise");
        let rows = sqlx::query(
            "SELECT 'faq' AS kind, id, body FROM faqs WHERE id IN (SELECT value FROM json_each(?1))
             UNION ALL
             SELECT 'doc' AS kind, id, body FROM documents WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(json(faq_ids))
        .bind(json(document_ids))
        .fetch_all(&self.pool)
        .await?;
        let (mut faqs, mut docs) = (Vec::new(), Vec::new());
        for row in &rows {
            if row.get::<String, _>("kind") == "faq" {
                faqs.push(Self::decode_body(row)?);
            } else {
                docs.push(Self::decode_body(row)?);
            }
        }
        Ok((faqs, docs))
    }

    /// Every document, ordered by id.
    pub async fn documents(&self) -> Result<Vec<Document>, StoreError> {
        let rows = sqlx::query("SELECT id, body FROM documents ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::decode_body).collect()
    }

    /// Removes document `id`; false when there was none.
    pub async fn delete_document(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_from("DELETE FROM documents WHERE id = ?", id)
            .await
    }

    /// Runs one `DELETE … WHERE id = ?` in a transaction that bumps the revision when a row
    /// went.
    async fn delete_from(&self, sql: &'static str, id: &str) -> Result<bool, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let n = sqlx::query(sql)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            Self::bump(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// A row's JSON body (an entry or a document), named by its id when unreadable.
    fn decode_body<T: serde::de::DeserializeOwned>(
        row: &sqlx::sqlite::SqliteRow,
    ) -> Result<T, StoreError> {
        let id: String = row.get("id");
        let body: String = row.get("body");
        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
            id,
            message: e.to_string(),
        })
    }

    /// What an index is built from: the entries, the documents and the out-of-scope examples.
    pub async fn index_inputs(
        &self,
    ) -> Result<(Vec<FaqEntry>, Vec<Document>, Vec<String>), StoreError> {
        let entries = self.all().await?.into_iter().map(|s| s.entry).collect();
        Ok((entries, self.documents().await?, self.out_of_scope().await?))
    }

    /// The calibration stored with this KB (`kefu eval faq --calibrate`), if any.
    pub async fn calibration(&self) -> Result<Option<Calibration>, StoreError> {
        self.setting("calibration").await
    }

    /// Stores (or with `None` removes) the KB's calibration.
    pub async fn set_calibration(&self, c: Option<&Calibration>) -> Result<(), StoreError> {
        self.set_setting("calibration", c).await
    }

    /// Questions this KB must not answer (`/v1/out-of-scope`): the queries nearest to them are
    /// not answered directly.
    pub async fn out_of_scope(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.setting("out_of_scope").await?.unwrap_or_default())
    }

    /// Replaces the out-of-scope examples (none: removes them).
    pub async fn set_out_of_scope(&self, texts: &[String]) -> Result<(), StoreError> {
        self.set_setting("out_of_scope", (!texts.is_empty()).then_some(texts))
            .await
    }

    async fn setting<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let row = sqlx::query("SELECT value FROM kb_settings WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let v: String = r.get(0);
            serde_json::from_str(&v).map_err(|e| StoreError::Corrupt {
                id: key.into(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    async fn set_setting<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: Option<&T>,
    ) -> Result<(), StoreError> {
        match value {
            Some(v) => {
                let v = serde_json::to_string(v).expect("setting serialises");
                sqlx::query(
                    "INSERT INTO kb_settings (key, value) VALUES (?1, ?2) \
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(v)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM kb_settings WHERE key = ?1")
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes `id`; false when there was no such entry.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_from("DELETE FROM faqs WHERE id = ?", id).await
    }

    async fn bump(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "UPDATE kb_meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
        )
        .fetch_one(&mut **tx)
        .await?
        .get(0))
    }
}
