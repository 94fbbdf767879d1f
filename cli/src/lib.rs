//! The `paysim` package's library: what the binary and its tests share — the built-in system
//! under test the scenario runner drives ([`builtin`]) and the `scenario` subcommands
//! ([`scenario`]).

pub mod builtin;
pub mod scenario;
