//! Scripted scenarios (being written).
