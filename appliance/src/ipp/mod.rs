//! IPP intake: the server, request checking, operations and attribute sets.
//!
//! Layout: [`server`] is the HTTP shell (sockets, limits, parsing);
//! [`request`] checks a parsed request; [`service`] runs the operations;
//! [`intake`] streams documents into the spool; [`printer_attrs`],
//! [`job_attrs`], [`template`] and [`requested`] build and filter attribute
//! sets; [`error`] maps every failure to its IPP status. IPP values, the
//! attribute guard and stored templates are in [`crate::ipp_wire`]. Only
//! `server`, `intake` and `service` do I/O.

pub mod auth;
pub mod body;
pub mod compression;
pub mod error;
pub mod intake;
pub mod job_attrs;
pub mod printer_attrs;
pub mod request;
pub mod requested;
pub mod server;
pub mod service;
pub mod template;
