//! The scheduler's integration tests, one binary: golden scenario files and property tests.

mod properties;
mod scenarios;
