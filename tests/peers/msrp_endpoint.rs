//! A test-only MSRP endpoint (RFC 4975) on one TCP connection: sends requests and responses,
//! reads frames with the crate's codec, every wait bounded by a timeout.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cpm_iwf::wire::msrp::{
    ByteRange, Continuation, Frame, Limits, Message, Method, MsrpCodec, MsrpUri,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::Decoder;

/// How long any single wait on the node may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// What reading a frame gave.
#[derive(Debug)]
pub enum Read {
    Frame(Frame),
    /// The node closed the connection.
    Closed,
    /// The codec could not frame the stream.
    Error(String),
}

/// The reading half.
pub struct Reader {
    rd: OwnedReadHalf,
    codec: MsrpCodec,
    buf: BytesMut,
}

impl Reader {
    /// The next frame, `Closed` at EOF; panics after [`WAIT`].
    pub async fn recv(&mut self) -> Read {
        timeout(WAIT, self.recv_inner())
            .await
            .expect("the node answered within the wait")
    }

    async fn recv_inner(&mut self) -> Read {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(f)) => return Read::Frame(f),
                Ok(None) => {}
                Err(e) => return Read::Error(e.to_string()),
            }
            self.buf.reserve(16 * 1024);
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => {}
            }
        }
    }

    /// The next frame, `None` when the connection closed or could not be framed (no panic:
    /// for peers that run until the test ends).
    pub async fn recv_any(&mut self) -> Option<Frame> {
        match self.recv_inner().await {
            Read::Frame(f) => Some(f),
            Read::Closed | Read::Error(_) => None,
        }
    }

    /// The next whole message; panics on anything else.
    pub async fn message(&mut self) -> Message {
        match self.recv().await {
            Read::Frame(Frame::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Whether the node closes the connection (reading and dropping frames meanwhile, at
    /// most `max` of them).
    pub async fn closed(&mut self, max: usize) -> bool {
        for _ in 0..max {
            match self.recv().await {
                Read::Closed => return true,
                Read::Frame(_) => {}
                Read::Error(_) => return false,
            }
        }
        false
    }
}

/// The writing half, with what an endpoint knows: its own URI and the node's.
pub struct Writer {
    wr: OwnedWriteHalf,
    /// This endpoint's URI (its `a=path`).
    pub uri: MsrpUri,
    /// The node's URI on this leg.
    pub node: MsrpUri,
    next: u64,
}

impl Writer {
    /// Write a message; panics after [`WAIT`].
    pub async fn send(&mut self, m: &Message) -> io::Result<()> {
        self.raw(&m.to_bytes()).await
    }

    /// Write bytes as they are.
    pub async fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        timeout(WAIT, self.wr.write_all(b))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write stalled"))?
    }

    /// A fresh transaction-id.
    pub fn tid(&mut self) -> Bytes {
        self.next += 1;
        Bytes::from(format!("ep{:08}", self.next))
    }

    /// A request to the node from this endpoint.
    pub fn request(&mut self, method: Method) -> Message {
        let mut m = Message::request(self.tid(), method);
        m.set_to_path(std::slice::from_ref(&self.node));
        m.set_from_path(std::slice::from_ref(&self.uri));
        m
    }

    /// A SEND chunk of `message_id`: bytes `start..start+len-1` of `total`.
    pub fn chunk(
        &mut self,
        message_id: &str,
        start: u64,
        total: u64,
        body: Bytes,
        last: bool,
    ) -> Message {
        let mut m = self.request(Method::Send);
        m.set_header("Message-ID", Bytes::copy_from_slice(message_id.as_bytes()));
        let r = ByteRange {
            start,
            end: Some(start - 1 + body.len() as u64),
            total: Some(total),
        };
        m.set_header("Byte-Range", r.to_bytes());
        m.set_body("text/plain", body);
        m.continuation = if last {
            Continuation::Complete
        } else {
            Continuation::More
        };
        m
    }

    /// The bodiless SEND that binds a connection (RFC 4975 §5.4).
    pub fn bind(&mut self) -> Message {
        let mut m = self.request(Method::Send);
        m.set_header("Message-ID", self.tid());
        m
    }

    /// This endpoint's response to a request from the node.
    pub fn respond(&self, req: &Message, code: u16) -> Message {
        Message::response_to(req, code, None).expect("the node's request has paths")
    }
}

/// A connected endpoint.
pub fn split(stream: TcpStream, uri: MsrpUri, node: MsrpUri) -> (Reader, Writer) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    (
        Reader {
            rd,
            codec: MsrpCodec::new(Limits::default()),
            buf: BytesMut::new(),
        },
        Writer {
            wr,
            uri,
            node,
            next: 0,
        },
    )
}

/// Connect to the node (a passive leg of the node's), bounded by [`WAIT`].
pub async fn connect(addr: SocketAddr, uri: MsrpUri, node: MsrpUri) -> (Reader, Writer) {
    let s = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    split(s, uri, node)
}

/// A listener on 127.0.0.1 with an ephemeral port; `recv_buffer` shrinks the receive buffer
/// of accepted connections (to make a stalled reader felt sooner).
pub fn listen(recv_buffer: Option<u32>) -> TcpListener {
    let sock = TcpSocket::new_v4().expect("socket");
    if let Some(n) = recv_buffer {
        sock.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    sock.listen(16).expect("listen")
}

/// Accept the node's connection (an active leg of the node's), bounded by [`WAIT`].
pub async fn accept(l: &TcpListener, uri: MsrpUri, node: MsrpUri) -> (Reader, Writer) {
    let (s, _) = timeout(WAIT, l.accept())
        .await
        .expect("the node connects in time")
        .expect("accept");
    split(s, uri, node)
}

/// `msrp://127.0.0.1:<port>/<sid>;tcp`
pub fn uri(port: u16, sid: &str) -> MsrpUri {
    MsrpUri::parse_str(&format!("msrp://127.0.0.1:{port}/{sid};tcp")).expect("uri")
}
