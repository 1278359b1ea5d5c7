//! The admin HTTP server: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
//! (Being written.)
