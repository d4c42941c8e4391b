//! IPP as bytes and values, shared by the IPP server ([`crate::ipp`]), the
//! printer client ([`crate::output::ipp`]), accounting and the release API:
//! value constructors ([`values`]), the attribute-section guard run on
//! untrusted bytes ([`guard`]), and a job's stored template
//! ([`stored_template`]). Pure, and low in the layering: it knows nothing
//! of queues, the store or the network.

pub mod guard;
pub mod stored_template;
pub mod values;
