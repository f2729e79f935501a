//! The resolve step: what validated targets need built before sessions can
//! use them, their rustls client configurations (which read CA and key
//! files), with problems reported on the target's `tls` field.

use std::sync::Arc;

use super::target::PlainTarget;
use super::tls;
use super::walker::{join, Walker};
use crate::session::spec::{TargetSpec, TlsSpec};

/// The targets as sessions take them; those whose TLS cannot be built are
/// left out, with a problem each.
pub(super) fn targets(w: &mut Walker<'_>, plain: Vec<PlainTarget>) -> Vec<Arc<TargetSpec>> {
    let mut out = Vec::with_capacity(plain.len());
    for PlainTarget { field, mut spec, tls } in plain {
        if let Some(t) = tls {
            match tls::build(&t.options, &t.server_name, spec.connections as usize) {
                Ok((config, server_name)) => spec.tls = Some(TlsSpec { config, server_name }),
                Err(e) => {
                    w.problem(join(&field, "tls"), e.to_string());
                    continue;
                }
            }
        }
        out.push(Arc::new(spec));
    }
    out
}
