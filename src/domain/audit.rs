//! Audit events: one per key-retrieval attempt that authenticated, written
//! before any key is decrypted, and one per write (escrow, device change,
//! retirement, settings change, key verification); never updated or deleted;
//! plus the changes `portal import` makes to who owns a device.
//!
//! The trail is read newest first in one total order, the event's
//! [`Position`]: its time at microsecond precision, then its event id. Both
//! stores sort by it, `since`/`until` compare at that precision, and a page's
//! `next` cursor is the position of its last event.

//!
//! The event types are in `event`, the trail's order, cursors and pages in
//! `trail`, and the one builder of events in `builder`.

mod builder;
mod event;
mod trail;
pub use builder::{Audit, AuditPorts};
pub use event::{Action, AuditEvent, Outcome, hour_of};
pub use trail::{
    AuditCursor, AuditPage, AuditQuery, InvalidCursor, Position, micros, newest_first, page,
    time_key,
};

/// Denied events one caller (tenant and user) may add to the trail per
/// clock hour. Beyond it, one marker event (`denials_capped`) says so and
/// further denials of that caller until the hour ends are only logged: a
/// token without any permission cannot grow the trail without bound.
pub const DENIED_EVENTS_PER_HOUR: u32 = 100;

/// Reason of the marker event written when a caller reaches the cap.
pub const DENIALS_CAPPED: &str = crate::domain::denial::Denied::DenialsCapped.as_str();
