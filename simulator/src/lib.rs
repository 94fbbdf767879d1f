//! Mock payment channel servers. See ../ARCHITECTURE.md.
