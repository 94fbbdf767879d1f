//! The property suite (`e2e::property`): random operation sequences with faults across both
//! channels against the whole stack, compared with the reference model after every step, the
//! ledger invariants after every step and agreement with the channels at quiescence; a slice
//! on PostgreSQL; and the proof that it finds each planted bug.

#[cfg(test)]
mod planted;
#[cfg(test)]
mod suite;
