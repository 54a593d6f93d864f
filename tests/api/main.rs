//! The API: routes over real sockets, the `events/` files through the Lambda
//! handler, and what reaches the logs.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod events;
mod hygiene;
mod lifecycle;
mod logs;
mod openapi;
mod proptests;
mod routes;
mod text;
