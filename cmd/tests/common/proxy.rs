//! A TCP proxy in front of the real Postgres, so a test can cut the database off (refuse new
//! connections, drop open ones) and bring it back, as a network failure or restart would.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub addr: SocketAddr,
    down: watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, mut down_rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                match listener.take() {
                    Some(l) => {
                        tokio::select! {
                            accepted = l.accept() => {
                                if let Ok((client, _)) = accepted {
                                    tokio::spawn(pipe(client, upstream, down_rx.clone()));
                                }
                                listener = Some(l);
                            }
                            _ = down_rx.changed() => {
                                // Down: drop the listener so connections are refused.
                                if !*down_rx.borrow() { listener = Some(l); }
                            }
                        }
                    }
                    None => {
                        if down_rx.changed().await.is_err() {
                            return;
                        }
                        if !*down_rx.borrow() {
                            listener = Some(TcpListener::bind(addr).await.unwrap());
                        }
                    }
                }
            }
        });
        Self { addr, down }
    }

    pub fn set_down(&self, down: bool) {
        let _ = self.down.send(down);
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut down: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = down.wait_for(|d| *d) => {}
    }
}
