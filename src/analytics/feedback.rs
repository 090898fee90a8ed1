//! Feedback on the bot's replies (`POST /v1/feedback`), stored beside the KB for analytics and
//! retraining: with the question asked and the entry answered, a correction (`faq_id`) is a
//! labelled example.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use utoipa::ToSchema;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    turn_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    helpful INTEGER,
    rating INTEGER,
    comment TEXT,
    faq_id TEXT,
    question TEXT,
    answered_faq_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_session ON feedback(session_id);
";

/// One piece of feedback as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Feedback {
    pub id: i64,
    pub turn_id: String,
    pub session_id: String,
    pub helpful: Option<bool>,
    /// 1–5.
    pub rating: Option<u8>,
    pub comment: Option<String>,
    /// The entry that would have been right, per the customer or agent.
    pub faq_id: Option<String>,
    /// The customer's question the reply answered (when the session was still there).
    pub question: Option<String>,
    /// The entry the bot answered with.
    pub answered_faq_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// An annotation's right intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// An annotation: a person should (or should not) have taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_handoff: Option<bool>,
    /// Who annotated (annotations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotator: Option<String>,
    /// `annotation` for a person's label of a turn (`POST /v1/annotations`); none for a
    /// customer's feedback. Only customers' feedback counts in satisfaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

pub struct FeedbackStore {
    pool: SqlitePool,
}

impl FeedbackStore {
    pub async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        // Columns added after the table first shipped: whose feedback it is (for erasure), and
        // what an annotation says (the right intent, whether a person should have taken over,
        // who annotated). `source` is `annotation` for those; customers' feedback has none.
        for (column, ddl) in [
            (
                "customer_id",
                "ALTER TABLE feedback ADD COLUMN customer_id TEXT;
                 CREATE INDEX IF NOT EXISTS feedback_customer ON feedback(customer_id);",
            ),
            ("intent", "ALTER TABLE feedback ADD COLUMN intent TEXT;"),
            (
                "should_handoff",
                "ALTER TABLE feedback ADD COLUMN should_handoff INTEGER;",
            ),
            (
                "annotator",
                "ALTER TABLE feedback ADD COLUMN annotator TEXT;",
            ),
            (
                "source",
                "ALTER TABLE feedback ADD COLUMN source TEXT;
                 CREATE INDEX IF NOT EXISTS feedback_turn ON feedback(turn_id);",
            ),
        ] {
            let has: bool = sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('feedback') WHERE name = ?",
            )
            .bind(column)
            .fetch_one(&pool)
            .await?;
            if !has {
                sqlx::raw_sql(ddl).execute(&pool).await?;
            }
        }
        Ok(Self { pool })
    }

    /// Removes a customer's feedback: given under their id, or in one of `sessions`.
    pub async fn erase(&self, customer_id: &str, sessions: &[String]) -> Result<u64, sqlx::Error> {
        super::erase_rows(&self.pool, "feedback", customer_id, sessions).await
    }

    /// Removes feedback older than `cutoff` (Unix seconds); how many.
    pub async fn purge_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        super::purge_rows(&self.pool, "feedback", "created_at", cutoff).await
    }

    /// Stores `f` (its `id` is assigned) for `customer_id` (when known) and returns it.
    pub async fn add(
        &self,
        mut f: Feedback,
        customer_id: Option<&str>,
    ) -> Result<Feedback, sqlx::Error> {
        let row = sqlx::query(
            "INSERT INTO feedback (turn_id, session_id, helpful, rating, comment, faq_id, question,
             answered_faq_id, created_at, customer_id, intent, should_handoff, annotator, source)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&f.turn_id)
        .bind(&f.session_id)
        .bind(f.helpful)
        .bind(f.rating.map(i64::from))
        .bind(&f.comment)
        .bind(&f.faq_id)
        .bind(&f.question)
        .bind(&f.answered_faq_id)
        .bind(f.created_at)
        .bind(customer_id)
        .bind(&f.intent)
        .bind(f.should_handoff)
        .bind(&f.annotator)
        .bind(&f.source)
        .fetch_one(&self.pool)
        .await?;
        f.id = row.get(0);
        Ok(f)
    }

    /// The newest `limit`, optionally of one session.
    pub async fn list(
        &self,
        session_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Feedback>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM feedback WHERE (?1 IS NULL OR session_id = ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(session_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Labelled examples for retraining (`--with-feedback`), oldest first: every row with the
    /// question asked and the right entry (`faq_id`: a customer's correction or an annotation)
    /// or the right intent (annotations). A question labelled again comes later, so readers
    /// that keep the last label of a question keep the newest.
    pub async fn labelled(&self) -> Result<Vec<Feedback>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM feedback
             WHERE TRIM(COALESCE(question, '')) != ''
               AND (TRIM(COALESCE(faq_id, '')) != '' OR TRIM(COALESCE(intent, '')) != '')
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Feedback {
    Feedback {
        id: r.get("id"),
        turn_id: r.get("turn_id"),
        session_id: r.get("session_id"),
        helpful: r.get("helpful"),
        rating: r.get::<Option<i64>, _>("rating").map(|x| x as u8),
        comment: r.get("comment"),
        faq_id: r.get("faq_id"),
        question: r.get("question"),
        answered_faq_id: r.get("answered_faq_id"),
        created_at: r.get("created_at"),
        intent: r.get("intent"),
        should_handoff: r.get("should_handoff"),
        annotator: r.get("annotator"),
        source: r.get("source"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(question: Option<&str>, faq_id: Option<&str>, intent: Option<&str>) -> Feedback {
        Feedback {
            id: 0,
            turn_id: "s-1".into(),
            session_id: "s".into(),
            helpful: Some(false),
            rating: None,
            comment: None,
            faq_id: faq_id.map(Into::into),
            question: question.map(Into::into),
            answered_faq_id: Some("wrong".into()),
            created_at: 1,
            intent: intent.map(Into::into),
            should_handoff: None,
            annotator: None,
            source: intent.map(|_| "annotation".into()),
        }
    }

    #[tokio::test]
    async fn labelled_rows_carry_a_question_and_an_entry_or_intent_oldest_first() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let store = FeedbackStore::open(pool).await.unwrap();
        for f in [
            row(Some("怎么退货"), Some("return"), None),
            row(Some("  "), Some("return"), None),
            row(None, None, Some("refund")),
            row(Some("thanks"), None, None),
            row(Some("where is my parcel"), Some(""), Some("shipping")),
            row(Some("怎么退货"), Some("return-v2"), None),
        ] {
            store.add(f, None).await.unwrap();
        }
        let got: Vec<(Option<String>, Option<String>, Option<String>)> = store
            .labelled()
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.question, f.faq_id, f.intent))
            .collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            got,
            vec![
                (s("怎么退货"), s("return"), None),
                (s("where is my parcel"), s(""), s("shipping")),
                (s("怎么退货"), s("return-v2"), None),
            ]
        );
    }
}
