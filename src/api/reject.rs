//! Extractors whose rejections are kefu's JSON errors (path, query, text body), and the wording
//! of serde's and axum's messages for the person reading them: no Rust type names.

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use regex::Regex;
use serde::de::DeserializeOwned;

use super::error::{ErrorBody, ErrorDetail};
use crate::error::Error;

/// A JSON error with a status and code outside [`Error`]'s table (`bad_request`,
/// `uri_too_long`, `internal`), or one of its errors.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }
}

impl From<Error> for Rejection {
    fn from(e: Error) -> Self {
        let (code, status) = (e.code(), super::error::status(&e));
        Self {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                problems: None,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Path` with JSON rejections: a segment that is not UTF-8 once percent-decoded (`%FF`) is a
/// 400 `bad_request`, one that does not parse a 422 `invalid_request`.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(rej) => Err(path_rejection(rej)),
        }
    }
}

fn path_rejection(rej: PathRejection) -> Rejection {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = &rej else {
        return Rejection::bad_request(humanize(&rej.body_text()));
    };
    match e.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => Rejection::bad_request(format!(
            "the URL's {key} is not UTF-8 text once percent-decoded; percent-encode the UTF-8 \
             bytes of the {key} (e.g. 退 is %E9%80%80)"
        )),
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => Error::Invalid(format!(
            "the URL's {key} {value:?} is not {}",
            expected(expected_type)
        ))
        .into(),
        _ => Error::Invalid(format!("the URL {}", humanize(&e.body_text()))).into(),
    }
}

/// `Query` with JSON rejections: a parameter that does not parse is a 422 `invalid_request`
/// naming the parameter and what it takes.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        query(&parts.uri).map(Self)
    }
}

fn query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, Rejection> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|rej: QueryRejection| {
            let text = humanize(&rej.body_text());
            Error::Invalid(match LEADING_FIELD.captures(&text) {
                Some(c) => format!("query parameter {}: {}", &c[1], &c[2]),
                None => format!("query string: {text}"),
            })
            .into()
        })
}

/// A UTF-8 text body (imports): 413 `payload_too_large` beyond `limits.max_body_bytes`, 400
/// `bad_request` for bytes that are not UTF-8 (a GBK file, say).
pub struct ApiText(pub String);

impl<S: Send + Sync> FromRequest<S> for ApiText {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        match String::from_utf8(bytes.into()) {
            Ok(s) => Ok(Self(s)),
            Err(e) => Err(Rejection::bad_request(not_utf8(e.utf8_error()))),
        }
    }
}

/// The JSON error for a body that could not be read.
pub fn body_rejection(rej: BytesRejection) -> Rejection {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge(
            "the request body is larger than the server accepts (limits.max_body_bytes)".into(),
        )
        .into()
    } else {
        Rejection::bad_request(format!(
            "the request body could not be read: {}",
            humanize(&rej.body_text())
        ))
    }
}

/// Why bytes are not UTF-8, for a person: most often a file saved as GBK.
pub fn not_utf8(e: std::str::Utf8Error) -> String {
    format!(
        "the body is not UTF-8 text (invalid byte at offset {}); send it encoded as UTF-8 \
         (GBK or GB18030 files must be converted first)",
        e.valid_up_to()
    )
}

/// `field: message` at the start of a message.
static LEADING_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z_][\w.\[\]]*): (.*)$").unwrap());

/// axum's and serde's rejection text reworded: axum's prefixes and serde_json's position
/// dropped, Rust type names (`usize`, `struct FaqEntry`, `untagged enum Inputs`) replaced by
/// JSON words. Unknown text passes through.
pub fn humanize(text: &str) -> String {
    static POSITION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r" at line \d+ column \d+$").unwrap());
    let t = without_prefix(text);
    let t = POSITION.replace(&t, "");
    match LEADING_FIELD.captures(&t) {
        Some(c) => format!("{}: {}", &c[1], leaf(&c[2])),
        None => leaf(&t),
    }
}

/// `text` without axum's "Failed to …: " in front.
pub fn without_prefix(text: &str) -> String {
    static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^(Failed to deserialize the JSON body into the target type|Failed to parse the request body as JSON|Failed to deserialize query string|Failed to deserialize form|Invalid URL|Failed to buffer the request body): ",
        )
        .unwrap()
    });
    PREFIX.replace(text.trim(), "").into_owned()
}

/// Builds the plain message from a rule's captures.
type Reword = fn(&regex::Captures) -> String;

/// One serde message (without its field path) in plain words.
fn leaf(m: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, Reword)>> = LazyLock::new(|| {
        let r = |s: &str| Regex::new(s).unwrap();
        vec![
            (r(r"^invalid type: (.+), expected (.+)$"), |c| {
                format!("expected {}, got {}", expected(&c[2]), got(&c[1]))
            }),
            (r(r"^invalid value: (.+), expected (.+)$"), |c| {
                format!(
                    "{} is not allowed: expected {}",
                    got(&c[1]),
                    expected(&c[2])
                )
            }),
            // serde_json reads a struct from a list too; the list is the mistake.
            (r(r"^invalid length \d+, expected struct .+$"), |_| {
                "expected an object, got a list".into()
            }),
            (r(r"^invalid length (\d+), expected (.+)$"), |c| {
                format!("has {} elements; expected {}", &c[1], expected(&c[2]))
            }),
            (
                r(r"^data did not match any variant of (untagged |internally tagged )?enum \w+$"),
                |_| "is not one of the accepted forms (see the OpenAPI document)".into(),
            ),
            (
                r(r"^unknown variant `(.*)`, expected (?:one of )?(.*)$"),
                |c| {
                    format!(
                        "unknown value \"{}\"; expected one of {}",
                        &c[1],
                        unquote(&c[2])
                    )
                },
            ),
            (r(r"^unknown variant `(.*)`, there are no variants$"), |c| {
                format!("unknown value \"{}\"", &c[1])
            }),
            (
                r(r"^unknown field `(.*)`, expected (?:one of )?(.*)$"),
                |c| {
                    format!(
                        "unknown field \"{}\"; expected one of {}",
                        &c[1],
                        unquote(&c[2])
                    )
                },
            ),
            (r(r"^unknown field `(.*)`, there are no fields$"), |c| {
                format!("unknown field \"{}\"", &c[1])
            }),
            (r(r"^missing field `(.*)`$"), |c| {
                format!("missing field \"{}\"", &c[1])
            }),
            (r(r"^duplicate field `(.*)`$"), |c| {
                format!("field \"{}\" is given twice", &c[1])
            }),
            (r(r"^invalid digit found in string$"), |_| {
                "expected a whole number".into()
            }),
            (r(r"^cannot parse integer from empty string$"), |_| {
                "expected a whole number, got nothing".into()
            }),
            (r(r"^number too large to fit in target type$"), |_| {
                "the number is too large".into()
            }),
            (r(r"^number too small to fit in target type$"), |_| {
                "the number is too small".into()
            }),
            (r(r"^invalid float literal$"), |_| {
                "expected a number".into()
            }),
            (r(r"^provided string was not `true` or `false`$"), |_| {
                "expected true or false".into()
            }),
        ]
    });
    for (re, f) in RULES.iter() {
        if let Some(c) = re.captures(m) {
            return f(&c);
        }
    }
    m.to_string()
}

/// What serde expected, in JSON words.
fn expected(e: &str) -> String {
    let e = e.trim();
    let plain = match e {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" => "a whole number ≥ 0",
        "isize" | "i8" | "i16" | "i32" | "i64" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "an object",
        "a boolean" | "bool" => "true or false",
        "unit" => "null",
        "a string" | "a borrowed string" | "String" | "string" => "a string",
        "char" | "a character" => "a single character",
        _ if e.starts_with("struct ") || e.starts_with("struct variant ") => "an object",
        _ if e.starts_with("tuple") => "a list",
        _ if e.contains("enum ") || e == "variant identifier" => "one of the allowed values",
        _ => return unquote(e),
    };
    plain.to_string()
}

/// What serde found, in JSON words.
fn got(u: &str) -> String {
    static SCALAR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:integer|floating point|boolean|character) `(.*)`$").unwrap()
    });
    if let Some(c) = SCALAR.captures(u) {
        return c[1].to_string();
    }
    if let Some(s) = u.strip_prefix("string ") {
        return format!("the string {s}");
    }
    match u {
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "unit value" | "unit" | "null" => "null".into(),
        _ => unquote(u),
    }
}

fn unquote(s: &str) -> String {
    s.replace('`', "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Params {
        limit: Option<i64>,
        format: Option<crate::kb::import::Format>,
        flag: Option<bool>,
    }

    fn query_message(q: &str) -> String {
        let uri: axum::http::Uri = format!("/v1/faqs?{q}").parse().unwrap();
        query::<Params>(&uri).unwrap_err().message
    }

    #[test]
    fn query_messages_name_the_parameter_in_plain_words() {
        assert_eq!(
            query_message("limit=1e20"),
            "query parameter limit: expected a whole number"
        );
        assert_eq!(
            query_message("limit=99999999999999999999"),
            "query parameter limit: the number is too large"
        );
        assert_eq!(
            query_message("format=bogus"),
            "query parameter format: unknown value \"bogus\"; expected one of \"jsonl\", \"csv\", \"md\""
        );
        assert_eq!(
            query_message("flag=yes"),
            "query parameter flag: expected true or false"
        );
    }

    #[test]
    fn json_messages_lose_rust_names() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            top_k: usize,
            tags: Vec<String>,
        }
        let msg = |body: &str| match axum::Json::<Body>::from_bytes(body.as_bytes()) {
            Err(rej) => humanize(&rej.body_text()),
            Ok(_) => panic!("{body} parsed"),
        };
        assert_eq!(
            msg(r#"{"top_k": "3", "tags": []}"#),
            "top_k: expected a whole number ≥ 0, got the string \"3\""
        );
        assert_eq!(
            msg(r#"{"top_k": -1, "tags": []}"#),
            "top_k: -1 is not allowed: expected a whole number ≥ 0"
        );
        assert_eq!(
            msg(r#"{"top_k": 1, "tags": {}}"#),
            "tags: expected a list, got an object"
        );
        assert_eq!(msg(r#"[1]"#), "expected an object, got a list");
        assert_eq!(msg(r#"{"tags": []}"#), "missing field \"top_k\"");
        assert_eq!(
            humanize(
                "inputs: data did not match any variant of untagged enum Inputs at line 1 column 9"
            ),
            "inputs: is not one of the accepted forms (see the OpenAPI document)"
        );
    }
}
