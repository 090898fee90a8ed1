//! Events and operational metrics.

pub mod metrics;
