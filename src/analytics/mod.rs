//! Events and operational metrics.

pub mod feedback;
pub mod metrics;
