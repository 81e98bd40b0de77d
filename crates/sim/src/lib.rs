//! hafen's deterministic simulator (being written).
