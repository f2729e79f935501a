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
    if opts.reset_on_close {
        // Closing then resets instead of leaving TIME_WAIT here; close
        // frames still go out first (they are written before the close).
        socket.set_linger(Some(std::time::Duration::ZERO))?;
    }
    // Best effort: without stamps, RTTs end when the loop reads the pong.
    if let Err(e) = super::rxstamp::enable(&socket) {
        log::debug!("SO_TIMESTAMPNS unavailable: {e}");
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::spec::Keepalive;
    use std::time::Duration;

    #[test]
    fn keepalive_user_timeout_and_nodelay_are_set_on_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = SocketOptions {
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(7),
                interval: Duration::from_secs(3),
                count: 4,
            }),
            user_timeout: Some(Duration::from_millis(12_000)),
            reset_on_close: true,
        };
        let stream = connect(listener.local_addr().unwrap(), &opts).unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(Duration::from_millis(12_000)));
        assert_eq!(sock.linger().unwrap(), Some(Duration::ZERO));

        let plain = connect(listener.local_addr().unwrap(), &SocketOptions::default()).unwrap();
        assert!(!socket2::SockRef::from(&plain).keepalive().unwrap());
        assert_eq!(socket2::SockRef::from(&plain).linger().unwrap(), None);
    }
}
