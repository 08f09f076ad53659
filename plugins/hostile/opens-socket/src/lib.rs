//! `opens-socket`: a rule that tries to send its window somewhere over TCP. Using
//! `std::net` makes the component import `wasi:sockets/*`, which the host refuses when the
//! rule is loaded, before it can ever run.

use sluice_rule_sdk::{Alert, Rule, Severity, Window, export_rule};
use std::io::Write;
use std::net::TcpStream;

/// The rule.
#[derive(Debug)]
pub struct OpensSocket;

impl Rule for OpensSocket {
    type Params = ();
    type State = ();

    fn evaluate(window: &Window, _: &(), _: &mut ()) -> Vec<Alert> {
        let sent = TcpStream::connect("127.0.0.1:9")
            .and_then(|mut s| s.write_all(window.tenant.as_bytes()))
            .is_ok();
        vec![Alert::new("exfiltrated", Severity::Info, "sent").value(f64::from(u8::from(sent)))]
    }
}

export_rule!(OpensSocket);
