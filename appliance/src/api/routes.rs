//! The release API's routes, as data: the router is a pure function of
//! method and path, and the same table is what the OpenAPI test checks the
//! published document against.

use http::Method;

/// One operation of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/openapi.json`
    OpenApi,
    /// `GET /api/v1/devices`
    Devices,
    /// `POST /api/v1/sessions`
    Login,
    /// `DELETE /api/v1/sessions/current`
    Logout,
    /// `GET /api/v1/jobs`
    Jobs,
    /// `POST /api/v1/jobs/release`
    Release,
    /// `DELETE /api/v1/jobs/{id}`
    DeleteJob(String),
    /// `GET /api/v1/releases/{id}`
    ReleaseStatus(String),
}

impl Route {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::OpenApi => "openapi",
            Route::Devices => "devices",
            Route::Login => "login",
            Route::Logout => "logout",
            Route::Jobs => "jobs",
            Route::Release => "release",
            Route::DeleteJob(_) => "delete_job",
            Route::ReleaseStatus(_) => "release_status",
        }
    }
}

/// Every route as (method, OpenAPI path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/devices"),
    ("post", "/api/v1/sessions"),
    ("delete", "/api/v1/sessions/current"),
    ("get", "/api/v1/jobs"),
    ("post", "/api/v1/jobs/release"),
    ("delete", "/api/v1/jobs/{id}"),
    ("get", "/api/v1/releases/{id}"),
];

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No such path.
    NotFound,
    /// The path exists with other methods (listed for `Allow`).
    MethodNotAllowed(&'static str),
}

/// The route for a method and path.
pub fn route(method: &Method, path: &str) -> Result<Route, NoRoute> {
    let rest = path.strip_prefix("/api/v1/").ok_or(NoRoute::NotFound)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (allowed, route) = match segments.as_slice() {
        ["openapi.json"] => ("GET", Route::OpenApi),
        ["devices"] => ("GET", Route::Devices),
        ["sessions"] => ("POST", Route::Login),
        ["sessions", "current"] => ("DELETE", Route::Logout),
        ["jobs"] => ("GET", Route::Jobs),
        ["jobs", "release"] => ("POST", Route::Release),
        ["jobs", id] if !id.is_empty() => ("DELETE", Route::DeleteJob((*id).to_owned())),
        ["releases", id] if !id.is_empty() => ("GET", Route::ReleaseStatus((*id).to_owned())),
        _ => return Err(NoRoute::NotFound),
    };
    if method.as_str() == allowed {
        Ok(route)
    } else {
        Err(NoRoute::MethodNotAllowed(allowed))
    }
}

/// The OpenAPI path template a concrete path matches; a literal segment
/// wins over a parameter (`/jobs/release` is not `/jobs/{id}`).
pub fn template(path: &str) -> Option<&'static str> {
    let matches = |t: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) = (t.split('/').collect(), path.split('/').collect());
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(x, y)| x == y || (x.starts_with('{') && !y.is_empty()))
    };
    ROUTES
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| matches(t))
        .min_by_key(|t| t.matches('{').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_in_the_table_is_routed() {
        for (method, path) in ROUTES {
            let concrete = path.replace("{id}", "0193b7d2-0000-7000-8000-000000000000");
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            assert!(route(&method, &concrete).is_ok(), "{method} {concrete}");
            assert_eq!(template(&concrete), Some(*path));
        }
    }

    #[test]
    fn wrong_methods_and_paths_are_told_apart() {
        assert_eq!(
            route(&Method::GET, "/api/v1/jobs/release"),
            Err(NoRoute::MethodNotAllowed("POST"))
        );
        assert_eq!(
            route(&Method::PUT, "/api/v1/jobs"),
            Err(NoRoute::MethodNotAllowed("GET"))
        );
        assert_eq!(route(&Method::GET, "/api/v2/jobs"), Err(NoRoute::NotFound));
        assert_eq!(
            route(&Method::GET, "/api/v1/jobs/x/y"),
            Err(NoRoute::NotFound)
        );
        assert_eq!(
            route(&Method::DELETE, "/api/v1/jobs/"),
            Err(NoRoute::NotFound)
        );
    }
}
