//! Non-blocking TCP sockets with the options the target asks for.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::session::spec::SocketOptions;

const EINPROGRESS: i32 = 115;

/// Starts a non-blocking connect; completion is signalled by writability.
pub fn connect(addr: SocketAddr, opts: &SocketOptions) -> io::Result<mio::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(k) = opts.keepalive {
        let ka = TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.count);
        socket.set_tcp_keepalive(&ka)?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(t) = opts.user_timeout {
        socket.set_tcp_user_timeout(Some(t))?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}
