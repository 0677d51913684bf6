//! The gateway's DNS service on its smoltcp sockets: queries over UDP and TCP (RFC 1035's
//! length-prefixed messages) answered from the directory or forwarded upstream by a task of
//! their own, and the answers delivered to clients that are still there.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use tracing::debug;

use super::handler::Handler;
use super::{dns, DNS_PORT, MAX_FORWARDS, UDP_DNS_MAX, UPSTREAM_TIMEOUT};

/// Where a forwarded query's answer goes.
#[derive(Debug, Clone, Copy)]
enum Client {
    Udp(udp::UdpMetadata),
    /// TCP connection `index`, as long as it is still the same connection (`generation`).
    Tcp {
        index: usize,
        generation: u64,
    },
}

/// What became of a query.
enum QueryResult {
    /// Answer now.
    Reply(Vec<u8>),
    /// Forwarded: the answer comes as an `Answer`.
    Pending,
    /// Malformed: nothing to answer.
    Dropped,
}

/// An upstream answer (or SERVFAIL) for a client.
pub(super) struct Answer {
    client: Client,
    message: Vec<u8>,
}

/// One TCP DNS socket and the connection on it.
pub(super) struct TcpConn {
    handle: SocketHandle,
    generation: u64,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    waiting: usize,
}

impl TcpConn {
    pub(super) fn new(handle: SocketHandle) -> TcpConn {
        TcpConn {
            handle,
            generation: 0,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            waiting: 0,
        }
    }
}

impl Handler {
    /// Answers one DNS query from `client_ip` (an address on this network), or forwards it
    /// and has the answer delivered to `to` later.
    fn answer_query(
        &mut self,
        query: &[u8],
        client_ip: IpAddr,
        max_len: usize,
        to: Client,
    ) -> QueryResult {
        self.counters.dns_queries.fetch_add(1, Relaxed);
        let outcome = {
            let names = self
                .names
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            dns::handle_query(query, &names.view(&self.config.network, client_ip), max_len)
        };
        match outcome {
            dns::Outcome::Reply(reply) => QueryResult::Reply(reply),
            dns::Outcome::Drop(reason) => {
                self.counters.dns_dropped.fetch_add(1, Relaxed);
                debug!(network = %self.config.network, reason = reason.name(), "DNS message dropped");
                QueryResult::Dropped
            }
            dns::Outcome::Forward(query) => {
                self.counters.dns_forwarded.fetch_add(1, Relaxed);
                if self.forwards >= MAX_FORWARDS {
                    self.counters.dns_servfail.fetch_add(1, Relaxed);
                    return match dns::servfail(&query) {
                        Some(reply) => QueryResult::Reply(reply),
                        None => QueryResult::Dropped,
                    };
                }
                self.forwards += 1;
                let upstreams = self.config.upstreams.clone();
                let done = self.done_tx.clone();
                let counters = self.counters.clone();
                self.runtime.spawn(async move {
                    // An answer fetched over TCP may be too large for a client that asked
                    // over UDP: it then gets it truncated and retries over TCP.
                    let answer = dns::forward(&query, &upstreams, UPSTREAM_TIMEOUT)
                        .await
                        .map_err(|e| debug!(error = %e, "upstream DNS failed"))
                        .ok()
                        .and_then(|answer| dns::fit_reply(&answer, &query, max_len));
                    let message = match answer {
                        Some(answer) => answer,
                        None => {
                            counters.dns_servfail.fetch_add(1, Relaxed);
                            dns::servfail(&query).unwrap_or_default()
                        }
                    };
                    let _ = done
                        .send(Answer {
                            client: to,
                            message,
                        })
                        .await;
                });
                QueryResult::Pending
            }
        }
    }

    pub(super) fn serve_udp_dns(&mut self) {
        loop {
            let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
            let Ok((query, meta)) = socket.recv() else {
                return;
            };
            let query = query.to_vec();
            let client = udp::UdpMetadata {
                endpoint: meta.endpoint,
                local_address: meta.local_address,
                meta: Default::default(),
            };
            let client_ip: IpAddr = meta.endpoint.addr.into();
            let to = Client::Udp(client);
            if let QueryResult::Reply(message) =
                self.answer_query(&query, client_ip, UDP_DNS_MAX, to)
            {
                self.deliver(Answer {
                    client: to,
                    message,
                });
            }
        }
    }

    pub(super) fn serve_tcp_dns(&mut self) {
        for index in 0..self.tcp.len() {
            let handle = self.tcp[index].handle;
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            if !socket.is_open() {
                let conn = &mut self.tcp[index];
                conn.generation += 1;
                conn.inbuf.clear();
                conn.outbuf.clear();
                conn.waiting = 0;
                socket.set_timeout(Some(smoltcp::time::Duration::from_secs(30)));
                let _ = socket.listen(DNS_PORT);
                continue;
            }
            while socket.can_recv() {
                let conn = &mut self.tcp[index];
                let _ = socket.recv(|data| {
                    conn.inbuf.extend_from_slice(data);
                    (data.len(), ())
                });
            }
            let client_ip: Option<IpAddr> = socket.remote_endpoint().map(|e| e.addr.into());
            // Each message is preceded by its 2-byte length (RFC 1035 §4.2.2).
            loop {
                let conn = &mut self.tcp[index];
                if conn.inbuf.len() < 2 {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([conn.inbuf[0], conn.inbuf[1]]));
                if conn.inbuf.len() < 2 + len {
                    break;
                }
                let query: Vec<u8> = conn.inbuf.drain(..2 + len).skip(2).collect();
                let to = Client::Tcp {
                    index,
                    generation: conn.generation,
                };
                let Some(client_ip) = client_ip else { break };
                match self.answer_query(&query, client_ip, usize::from(u16::MAX), to) {
                    QueryResult::Reply(message) => self.deliver(Answer {
                        client: to,
                        message,
                    }),
                    QueryResult::Pending => self.tcp[index].waiting += 1,
                    QueryResult::Dropped => {
                        // Garbage on a stream cannot be resynchronised: end the connection.
                        self.sockets.get_mut::<tcp::Socket>(handle).abort();
                        break;
                    }
                }
            }
            let conn = &mut self.tcp[index];
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            if !conn.outbuf.is_empty() && socket.can_send() {
                if let Ok(sent) = socket.send_slice(&conn.outbuf) {
                    conn.outbuf.drain(..sent);
                }
            }
            if socket.state() == tcp::State::CloseWait
                && conn.outbuf.is_empty()
                && conn.waiting == 0
            {
                socket.close();
            }
        }
    }

    /// Sends an answer to its client, if it is still there.
    pub(super) fn deliver(&mut self, answer: Answer) {
        match answer.client {
            Client::Udp(meta) => {
                let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
                if let Err(e) = socket.send_slice(&answer.message, meta) {
                    self.counters.dns_unsent.fetch_add(1, Relaxed);
                    debug!(error = %e, "DNS answer not sent");
                }
            }
            Client::Tcp { index, generation } => {
                let Some(conn) = self.tcp.get_mut(index) else {
                    return;
                };
                if conn.generation != generation {
                    return;
                }
                conn.waiting = conn.waiting.saturating_sub(1);
                let Ok(len) = u16::try_from(answer.message.len()) else {
                    return;
                };
                conn.outbuf.extend_from_slice(&len.to_be_bytes());
                conn.outbuf.extend_from_slice(&answer.message);
            }
        }
    }
}
