//! The back-to-back MSRP relay (RFC 4975): the node is the MSRP endpoint of each leg of a chat
//! session and forwards translated chunks between them. (Being written.)
