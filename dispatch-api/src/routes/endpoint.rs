//! The route table, each route defined once: beside its handler, in the `endpoints()` of its
//! module, as an [`Endpoint`] whose method and path are the handler's own `#[utoipa::path]`.
//! The listeners serve what the endpoints say and the OpenAPI document documents the same
//! endpoints, so an endpoint is never served undocumented, documented unserved, or served at
//! another path than the document says. (The one route outside them is the ops listener's
//! `/openapi.json`: the document itself.)

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, Route, web};
use utoipa::__dev::{SchemaReferences, Tags};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::HttpMethod;

/// One route: a handler at the method and path its `#[utoipa::path]` documents.
pub struct Endpoint {
    /// The whole path, as documented: `/admin/clients/{name}/mode`.
    pub path: String,
    pub methods: Vec<HttpMethod>,
    route: Box<dyn Fn() -> Route>,
    document: fn(&mut OpenApi),
}

impl Endpoint {
    /// The endpoint of `handler`, whose `#[utoipa::path]` generated `P` (named `__path_` and
    /// the handler's name, by utoipa's convention). `SchemaReferences` and `Tags` are utoipa's
    /// own (hidden) traits of that type, which its derives and utoipa-axum's `routes!` read too.
    pub fn of<P, F, Args>(handler: F) -> Self
    where
        P: utoipa::Path + SchemaReferences + for<'t> Tags<'t>,
        F: Handler<Args> + Clone,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        Self {
            path: P::path(),
            methods: P::methods(),
            route: Box::new(move || web::route().to(handler.clone())),
            document: document::<P>,
        }
    }

    /// Its routes: one per method, each guarded by its method.
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.methods
            .iter()
            .map(|method| (self.route)().method(actix_method(method)))
    }

    /// Adds its operation, and the schemas that operation refers to, to `api`.
    pub fn document(&self, api: &mut OpenApi) {
        (self.document)(api);
    }
}

/// What utoipa's `OpenApi` derive does for each of its `paths(...)`: the operation with its
/// `tag`, and the schemas it refers to among the components.
fn document<P: utoipa::Path + SchemaReferences + for<'t> Tags<'t>>(api: &mut OpenApi) {
    let mut operation = P::operation();
    operation
        .tags
        .get_or_insert_with(Vec::new)
        .extend(P::tags().into_iter().map(str::to_owned));
    api.paths
        .add_path_operation(P::path(), P::methods(), operation);
    let mut schemas = Vec::new();
    P::schemas(&mut schemas);
    api.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
}

/// The resources of `endpoints` under `scope` (the prefix of their paths), one per path with
/// a route per method, in the order the endpoints come; each answers any other method with
/// `not_allowed`.
pub fn resources<'a>(
    scope: &'a str,
    endpoints: &'a [Endpoint],
    not_allowed: fn() -> Route,
) -> impl Iterator<Item = actix_web::Resource> + 'a {
    let mut paths: Vec<&str> = Vec::new();
    for endpoint in endpoints {
        if !paths.contains(&endpoint.path.as_str()) {
            paths.push(&endpoint.path);
        }
    }
    paths.into_iter().map(move |path| {
        let within = path
            .strip_prefix(scope)
            .unwrap_or_else(|| panic!("the route {path} is outside its scope {scope}"));
        endpoints
            .iter()
            .filter(|endpoint| endpoint.path == path)
            .flat_map(Endpoint::routes)
            .fold(web::resource(within), actix_web::Resource::route)
            .default_service(not_allowed())
    })
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}
