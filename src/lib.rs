//! kefu (客服): a self-hosted semantic search and intent service for customer support.

pub mod analytics;
pub mod api;
pub mod atomic;
pub mod auth;
pub mod bench;
pub mod channels;
pub mod clock;
pub mod config;
pub mod core;
pub mod dialog;
pub mod embed;
pub mod error;
pub mod eval;
pub mod index;
pub mod intent;
pub mod kb;
pub mod matcher;
pub mod model;
pub mod optim;
pub mod outgoing;
pub mod privacy;
pub mod recommend;
pub mod serve;
pub mod text;
