//! Events and operational metrics.

pub mod cluster;
pub mod feedback;
pub mod metrics;
