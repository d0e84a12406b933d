//! The cost of the `RequireToken` layer per request, without sockets: a hello service called
//! bare, behind the layer (valid token among 10,000, memory store), and `verify` alone.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use keygate::tower::RequireTokenLayer;
use keygate::{IssueRequest, MemoryStore, ServerKey, TokenManager};
use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone)]
struct Hello;

impl Service<Request<String>> for Hello {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        ready(Ok(Response::new(String::from("Hello, World!"))))
    }
}

fn request(auth: &HeaderValue) -> Request<String> {
    let mut req = Request::new(String::new());
    req.headers_mut()
        .insert(header::AUTHORIZATION, auth.clone());
    req
}

fn layer(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let (manager, token) = rt
        .block_on(async {
            let manager = TokenManager::builder(MemoryStore::new())
                .server_key(ServerKey::generate())
                .build()?;
            for i in 0..10_000 {
                manager
                    .issue(IssueRequest::new(format!("t{i}"), "load"))
                    .await?;
            }
            let issued = manager.issue(IssueRequest::new("bench", "load")).await?;
            Ok::<_, keygate::Error>((manager, issued.expose_secret().to_owned()))
        })
        .unwrap_or_else(|e| panic!("setup: {e}"));
    let auth =
        HeaderValue::try_from(format!("Bearer {token}")).unwrap_or_else(|e| panic!("header: {e}"));

    let mut group = c.benchmark_group("http_layer");
    group.bench_function("bare hello", |b| {
        let mut svc = Hello;
        b.to_async(&rt).iter(|| svc.call(request(&auth)));
    });
    group.bench_function("hello behind RequireToken", |b| {
        let mut svc = RequireTokenLayer::new(manager.clone()).layer(Hello);
        b.to_async(&rt).iter(|| svc.call(request(&auth)));
    });
    group.bench_function("hello behind RequireToken, no expiry header", |b| {
        let config = keygate::http::AuthConfig::new().expiry_header(None);
        let mut svc = RequireTokenLayer::with_config(manager.clone(), config).layer(Hello);
        b.to_async(&rt).iter(|| svc.call(request(&auth)));
    });
    group.bench_function("verify alone", |b| {
        b.to_async(&rt).iter(|| manager.verify(&token));
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
