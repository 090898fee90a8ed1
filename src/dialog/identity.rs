//! One customer across channels: the identities a customer is known by on each channel (a
//! phone number, a WeChat openid or unionid, an app's user id, a web visitor id), linked to one
//! customer id, and the conversation each customer has open, so that a question asked on SMS
//! continues on WeChat with its context.
//!
//! An identity seen for the first time gets a customer id of its own (`c_` and 32 random hex
//! digits, never the phone number: ids travel into analytics and profiles). Linking
//! (`POST /v1/customers/{id}/identities`, or a phone number confirmed in a conversation) points
//! it at another customer, and that customer inherits its open conversation when it has none.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use utoipa::ToSchema;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS customer_identities (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    opted_out INTEGER NOT NULL DEFAULT 0,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX IF NOT EXISTS customer_identities_customer ON customer_identities(customer_id);
CREATE TABLE IF NOT EXISTS identity_codes (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    phone TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS customer_conversations (
    customer_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    survey_turn_id TEXT,
    channel TEXT,
    updated_at INTEGER NOT NULL
);
";

/// What a channel knows a customer by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A phone number (SMS; a number confirmed in a conversation).
    Phone,
    /// A WeChat Official Account's `openid` (one per account).
    WechatOpenid,
    /// A WeChat `unionid` (one per person across a company's accounts).
    WechatUnionid,
    /// The operator's app's user id.
    AppUser,
    /// The web widget's visitor id (kept in the browser).
    WebVisitor,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::WechatOpenid => "wechat_openid",
            Self::WechatUnionid => "wechat_unionid",
            Self::AppUser => "app_user",
            Self::WebVisitor => "web_visitor",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Phone,
            Self::WechatOpenid,
            Self::WechatUnionid,
            Self::AppUser,
            Self::WebVisitor,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A channel identity: kind and value (a phone number in its normal form, see [`phone`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub kind: IdentityKind,
    /// 1–128 characters, no spaces or control characters; a phone number: digits with an
    /// optional leading `+` (spaces, dashes and brackets are dropped).
    #[schema(min_length = 1, max_length = 128)]
    pub value: String,
}

impl Identity {
    pub fn new(kind: IdentityKind, value: &str) -> Result<Self, String> {
        let value = match kind {
            IdentityKind::Phone => {
                phone(value).ok_or_else(|| format!("{value:?} is not a phone number"))?
            }
            _ => {
                if !crate::recommend::store::valid_id(value) {
                    return Err(format!(
                        "{} {value:?} is not an id (1–128 characters, no spaces or control characters)",
                        kind.as_str()
                    ));
                }
                value.to_string()
            }
        };
        Ok(Self { kind, value })
    }

    /// The value as logs may show it: a phone number's middle digits and most of an id hidden.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.value.chars().collect();
        let n = chars.len();
        let (head, tail) = match self.kind {
            IdentityKind::Phone => (3.min(n), 2.min(n.saturating_sub(3))),
            _ => (4.min(n / 3), 0),
        };
        let hidden = n - head - tail;
        let mut s: String = chars[..head].iter().collect();
        s.extend(std::iter::repeat_n('*', hidden));
        s.extend(&chars[n - tail..]);
        format!("{}:{s}", self.kind.as_str())
    }
}

/// A phone number in its normal form: its digits, with a leading `+` when it had one; spaces,
/// dashes, dots and brackets dropped. `None` for anything else or fewer than 5 or more than 20
/// digits.
pub fn phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, raw),
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (5..=20)
        .contains(&digits.len())
        .then(|| if plus { format!("+{digits}") } else { digits })
}

/// An identity as stored, with its customer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LinkedIdentity {
    pub kind: IdentityKind,
    pub value: String,
    pub customer_id: String,
    /// Confirmed: the channel vouches for it (an SMS sender, a WeChat openid), a code sent to
    /// the number was given back, or an operator linked it.
    pub verified: bool,
    /// The customer sent STOP (SMS): nothing is sent to it until they send START.
    pub opted_out: bool,
    /// Seconds since the Unix epoch.
    pub linked_at: i64,
}

/// The conversation a customer has open, whatever the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenConversation {
    pub session_id: String,
    /// The reply that offered the survey, while its rating is awaited.
    pub survey_turn_id: Option<String>,
    pub channel: Option<String>,
}

/// A code sent to a phone number to confirm that a channel identity's holder has it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCode {
    pub phone: String,
    pub code_hash: String,
    /// Unix seconds.
    pub sent_at: i64,
    /// Wrong codes given so far.
    pub attempts: i64,
}

/// A fresh customer id: `c_` and 128 random bits in hex.
pub fn new_customer_id() -> String {
    format!("c_{}", crate::dialog::session::new_id())
}

#[derive(Clone)]
pub struct IdentityStore {
    pool: SqlitePool,
}

impl IdentityStore {
    pub async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn get(&self, id: &Identity) -> Result<Option<LinkedIdentity>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT kind, value, customer_id, verified, opted_out, linked_at
             FROM customer_identities WHERE kind = ? AND value = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(linked))
    }

    /// The customer `id` belongs to, made (with a fresh customer id) when it is new.
    /// `verified`: the channel vouches for it (marks a stored one verified too).
    pub async fn resolve(&self, id: &Identity, verified: bool) -> Result<String, sqlx::Error> {
        // Every channel message comes here: a known identity is read, not written.
        if let Some(known) = self.get(id).await?
            && (known.verified || !verified)
        {
            return Ok(known.customer_id);
        }
        let fresh = new_customer_id();
        sqlx::query(
            "INSERT INTO customer_identities (kind, value, customer_id, verified, linked_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (kind, value) DO UPDATE SET verified = MAX(verified, excluded.verified)",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .bind(&fresh)
        .bind(verified)
        .bind(crate::clock::now())
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar(
            "SELECT customer_id FROM customer_identities WHERE kind = ? AND value = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .fetch_one(&self.pool)
        .await
    }

    /// Points `id` at `customer_id` (in one transaction): the customer it belonged to before
    /// hands over its open conversation when `customer_id` has none. Returns the identity as
    /// stored and the customer it belonged to before (when another).
    pub async fn link(
        &self,
        customer_id: &str,
        id: &Identity,
        verified: bool,
    ) -> Result<(LinkedIdentity, Option<String>), sqlx::Error> {
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        let before: Option<String> = sqlx::query_scalar(
            "SELECT customer_id FROM customer_identities WHERE kind = ? AND value = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO customer_identities (kind, value, customer_id, verified, linked_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (kind, value) DO UPDATE SET customer_id = excluded.customer_id,
                 verified = MAX(verified, excluded.verified), linked_at = excluded.linked_at",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .bind(customer_id)
        .bind(verified)
        .bind(crate::clock::now())
        .execute(&mut *tx)
        .await?;
        let previous = before.filter(|b| b != customer_id);
        if let Some(prev) = &previous {
            // The conversation moves with the identity unless the customer has one already.
            sqlx::query(
                "UPDATE OR IGNORE customer_conversations SET customer_id = ? WHERE customer_id = ?",
            )
            .bind(customer_id)
            .bind(prev)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(
            "SELECT kind, value, customer_id, verified, opted_out, linked_at
             FROM customer_identities WHERE kind = ? AND value = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((linked(row), previous))
    }

    /// Removes one identity; whether there was one of this customer's.
    pub async fn unlink(&self, customer_id: &str, id: &Identity) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "DELETE FROM customer_identities WHERE kind = ? AND value = ? AND customer_id = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .bind(customer_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Every identity of a customer.
    pub async fn of_customer(&self, customer_id: &str) -> Result<Vec<LinkedIdentity>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT kind, value, customer_id, verified, opted_out, linked_at
             FROM customer_identities WHERE customer_id = ? ORDER BY kind, value",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(linked).collect())
    }

    /// STOP (`true`) or START (`false`) for one identity.
    pub async fn set_opted_out(&self, id: &Identity, opted_out: bool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE customer_identities SET opted_out = ? WHERE kind = ? AND value = ?")
            .bind(opted_out)
            .bind(id.kind.as_str())
            .bind(&id.value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The conversation `customer_id` has open (it may have expired from the session store
    /// since: the caller checks).
    pub async fn conversation(
        &self,
        customer_id: &str,
    ) -> Result<Option<OpenConversation>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT session_id, survey_turn_id, channel FROM customer_conversations
             WHERE customer_id = ?",
        )
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| OpenConversation {
            session_id: r.get(0),
            survey_turn_id: r.get(1),
            channel: r.get(2),
        }))
    }

    pub async fn set_conversation(
        &self,
        customer_id: &str,
        c: &OpenConversation,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO customer_conversations (customer_id, session_id, survey_turn_id, channel,
                 updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (customer_id) DO UPDATE SET session_id = excluded.session_id,
                 survey_turn_id = excluded.survey_turn_id, channel = excluded.channel,
                 updated_at = excluded.updated_at",
        )
        .bind(customer_id)
        .bind(&c.session_id)
        .bind(&c.survey_turn_id)
        .bind(&c.channel)
        .bind(crate::clock::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The code pending for `id`, if any.
    pub async fn pending_code(&self, id: &Identity) -> Result<Option<PendingCode>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT phone, code_hash, sent_at, attempts FROM identity_codes
             WHERE kind = ? AND value = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| PendingCode {
            phone: r.get(0),
            code_hash: r.get(1),
            sent_at: r.get(2),
            attempts: r.get(3),
        }))
    }

    /// Records a code sent to `phone` for `id` (replacing an earlier one).
    pub async fn set_code(
        &self,
        id: &Identity,
        phone: &str,
        code_hash: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO identity_codes (kind, value, phone, code_hash, sent_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (kind, value) DO UPDATE SET phone = excluded.phone,
                 code_hash = excluded.code_hash, sent_at = excluded.sent_at, attempts = 0",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .bind(phone)
        .bind(code_hash)
        .bind(crate::clock::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One more wrong code for `id`.
    pub async fn code_failed(&self, id: &Identity) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE identity_codes SET attempts = attempts + 1 WHERE kind = ? AND value = ?",
        )
        .bind(id.kind.as_str())
        .bind(&id.value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the code pending for `id`.
    pub async fn clear_code(&self, id: &Identity) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM identity_codes WHERE kind = ? AND value = ?")
            .bind(id.kind.as_str())
            .bind(&id.value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Erasure: every identity and the open conversation of a customer; how many rows.
    pub async fn erase(&self, customer_id: &str) -> Result<u64, sqlx::Error> {
        let mut tx = crate::kb::store::begin_write(&self.pool).await?;
        let mut n = 0;
        // Codes pending for the customer's identities go first (they name the phone).
        n += sqlx::query(
            "DELETE FROM identity_codes WHERE (kind, value) IN
                 (SELECT kind, value FROM customer_identities WHERE customer_id = ?)",
        )
        .bind(customer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for sql in [
            "DELETE FROM customer_identities WHERE customer_id = ?",
            "DELETE FROM customer_conversations WHERE customer_id = ?",
        ] {
            n += sqlx::query(sql)
                .bind(customer_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Retention: open-conversation pointers untouched since `cutoff` (Unix seconds), and
    /// phone codes sent before it.
    pub async fn purge_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        Ok(
            crate::analytics::purge_rows(
                &self.pool,
                "customer_conversations",
                "updated_at",
                cutoff,
            )
            .await?
                + crate::analytics::purge_rows(&self.pool, "identity_codes", "sent_at", cutoff)
                    .await?,
        )
    }
}

fn linked(r: sqlx::sqlite::SqliteRow) -> LinkedIdentity {
    let kind: String = r.get(0);
    LinkedIdentity {
        kind: IdentityKind::parse(&kind).unwrap_or(IdentityKind::AppUser),
        value: r.get(1),
        customer_id: r.get(2),
        verified: r.get(3),
        opted_out: r.get(4),
        linked_at: r.get(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_take_one_form() {
        assert_eq!(
            phone("+86 138-0013-8000").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(phone("(415) 555.0100").as_deref(), Some("4155550100"));
        assert_eq!(phone("1234"), None);
        assert_eq!(phone("138x0013"), None);
        assert_eq!(phone("++861380013"), None);
    }

    #[test]
    fn masked_values_hide_the_middle() {
        let p = Identity::new(IdentityKind::Phone, "+8613800138000").unwrap();
        assert_eq!(p.masked(), "phone:+86*********00");
        let o = Identity::new(IdentityKind::WechatOpenid, "oyORnuP8q7ou2gfYjqLzSIWZf0rs").unwrap();
        assert!(o.masked().starts_with("wechat_openid:oyOR*"));
        assert!(!o.masked().contains("Zf0rs"));
    }

    #[tokio::test]
    async fn linking_moves_the_open_conversation() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        let s = IdentityStore::open(pool).await.unwrap();
        let sms = Identity::new(IdentityKind::Phone, "13800138000").unwrap();
        let wx = Identity::new(IdentityKind::WechatOpenid, "openid-1").unwrap();
        let a = s.resolve(&sms, true).await.unwrap();
        assert_eq!(s.resolve(&sms, false).await.unwrap(), a, "stable");
        let open = OpenConversation {
            session_id: "s1".into(),
            survey_turn_id: None,
            channel: Some("sms".into()),
        };
        s.set_conversation(&a, &open).await.unwrap();
        let b = s.resolve(&wx, true).await.unwrap();
        assert_ne!(a, b);
        // The phone is linked to the WeChat customer: its conversation follows.
        let (l, prev) = s.link(&b, &sms, false).await.unwrap();
        assert_eq!(prev.as_deref(), Some(a.as_str()));
        assert!(l.verified, "a verified identity stays verified");
        assert_eq!(s.conversation(&b).await.unwrap(), Some(open));
        assert_eq!(s.of_customer(&b).await.unwrap().len(), 2);
        assert_eq!(s.erase(&b).await.unwrap(), 3);
        assert!(s.get(&sms).await.unwrap().is_none());
    }
}
