//! The `switch` example's scripted round (visit, log in, visit, log out, replay old cookies)
//! through the real HTTP layer, on server-side, encrypted-cookie and JWT sessions: the same
//! handlers serve all three.

#[allow(dead_code)]
#[path = "../examples/switch.rs"]
mod switch;

#[test]
fn the_same_handlers_serve_server_side_cookie_and_jwt_sessions() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            for kind in ["server", "cookie", "jwt"] {
                switch::check(kind)
                    .await
                    .unwrap_or_else(|error| panic!("{kind}: {error}"));
            }
            assert!(switch::check("carrier-pigeon").await.is_err());
        });
}
