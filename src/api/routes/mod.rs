//! One module per route, each with the parsing of its input and the shape
//! of its answer. `table::ROUTES` names each `run`.

pub(super) mod audit_events;
pub(super) mod batch_keys;
pub(super) mod close_incident;
pub(super) mod escrow;
pub(super) mod find_keys;
pub(super) mod get_settings;
pub(super) mod list_devices;
pub(super) mod list_incidents;
pub(super) mod open_incident;
pub(super) mod patch_settings;
pub(super) mod put_device;
pub(super) mod restore_device;
pub(super) mod retire_device;
pub(super) mod retrieve_key;
pub(super) mod rotation_requests;
