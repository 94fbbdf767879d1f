//! Conformance harness. See ../ARCHITECTURE.md.
