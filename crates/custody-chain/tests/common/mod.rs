//! A loopback HTTP stub server for the backend tests.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request as the stub saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the test's handler answers.
pub type Reply = (StatusCode, Vec<(&'static str, String)>, Vec<u8>);

/// A stub bound on 127.0.0.1:0; the server task is aborted when this is dropped.
pub struct Stub {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    /// Serves every request with `handler`, recording it first. A `None` reply never
    /// answers (the request hangs until the client gives up).
    pub async fn serve<F>(handler: F) -> Self
    where
        F: Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = Arc::clone(&seen);
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&log);
                async move {
                    let request = Seen {
                        method,
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    };
                    log.lock().expect("log").push(request.clone());
                    match handler(&request) {
                        Some((status, headers, body)) => {
                            let mut response: Response = (status, body).into_response();
                            for (name, value) in headers {
                                response
                                    .headers_mut()
                                    .insert(name, value.parse().expect("header value"));
                            }
                            response
                        }
                        None => std::future::pending().await,
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { url, seen, task }
    }

    /// The requests seen so far, as `METHOD /path`.
    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("log")
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

/// A loopback URL nothing listens on.
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    url
}

pub fn text(status: u16, body: impl Into<String>) -> Option<Reply> {
    Some((
        StatusCode::from_u16(status).expect("status"),
        vec![("content-type", "text/plain".to_owned())],
        body.into().into_bytes(),
    ))
}

pub fn json(status: u16, body: serde_json::Value) -> Option<Reply> {
    Some((
        StatusCode::from_u16(status).expect("status"),
        vec![("content-type", "application/json".to_owned())],
        body.to_string().into_bytes(),
    ))
}
