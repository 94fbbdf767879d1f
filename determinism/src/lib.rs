//! The one seam for time, entropy and HTTP transport: clocks, the scheduler of due events,
//! seeded entropy and the `Transport` trait with its in-process, reqwest and faulty forms.
//!
//! **Architecture invariant:** nothing else in the workspace reads the OS clock, draws OS
//! randomness, sleeps, or opens an HTTP connection directly (clippy `disallowed-methods`).
//! Swapping this crate's implementations is what turns the sandbox into a deterministic
//! simulation: a virtual clock driven from event to event, a seeded generator, and Routers
//! called in-process.

mod clock;
mod entropy;
mod scheduler;
mod sleeper;
mod transport;

pub use clock::{
    format_rfc3339, parse_rfc3339, Clock, ScaledClock, SkewedClock, SystemClock, TimeError,
    UnixMillis, VirtualClock,
};
pub use entropy::{Entropy, EntropyExt, OsEntropy, SeededEntropy};
pub use scheduler::{
    drive_on_system_clock, job, run_virtual_until, BoxFuture, EventId, Job, PendingEvent, Scheduler,
};
pub use sleeper::{Sleeper, SystemSleeper, VirtualSleeper};
pub use transport::{
    FaultMatcher, FaultRecord, FaultRule, FaultRuleId, FaultyTransport, HttpRequest, HttpResponse,
    InProcessTransport, ReqwestTransport, Transport, TransportError, TransportFault,
};
