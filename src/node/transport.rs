//! SIP transports (RFC 3261 §18): UDP and TCP listeners per side, connection reuse, framing by
//! [`crate::wire::sip`], source ACL. (Being written.)
