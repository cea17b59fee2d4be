//! The http-01 responder (RFC 8555 §8.3): the CA fetches
//! `http://{name}/.well-known/acme-challenge/{token}` and expects the token's key authorization.
//! It answers only the tokens of orders in progress; everything else is 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::error::WorkerError;

/// The key authorizations of the challenges in progress, by token.
#[derive(Clone, Default)]
pub struct Challenges(Arc<Mutex<HashMap<String, String>>>);

impl Challenges {
    pub fn insert(&self, token: String, key_authorization: String) {
        self.lock().insert(token, key_authorization);
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The challenges answered for one order, withdrawn when it is done, however it ends.
pub struct Answered<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl<'a> Answered<'a> {
    pub fn new(challenges: &'a Challenges) -> Self {
        Self {
            challenges,
            tokens: Vec::new(),
        }
    }

    pub fn answer(&mut self, token: String, key_authorization: String) {
        self.tokens.push(token.clone());
        self.challenges.insert(token, key_authorization);
    }
}

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}

/// Listens on `listen` and answers the challenges in `challenges`, for as long as the process
/// runs (renewals come back to it). One worker: a CA makes a few requests per renewal.
pub fn serve(listen: &str, challenges: Challenges) -> Result<(), WorkerError> {
    let data = web::Data::new(challenges);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/.well-known/acme-challenge/{token}", web::get().to(answer))
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)
    .map_err(|e| {
        WorkerError::Config(format!(
            "tls.acme.http01_listen `{listen}`: cannot listen for http-01 challenges: {e}"
        ))
    })?
    .run();
    actix_rt::spawn(server);
    Ok(())
}

async fn answer(token: web::Path<String>, challenges: web::Data<Challenges>) -> HttpResponse {
    match challenges.get(&token) {
        Some(key_authorization) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(key_authorization),
        None => HttpResponse::NotFound().finish(),
    }
}
