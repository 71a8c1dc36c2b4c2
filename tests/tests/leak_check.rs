//! The whole-run leak check itself, in a test binary of its own (the
//! credentials it registers would fail every other test's servers).

use actionhost_tests::server::{Server, register_secret};

#[test]
#[should_panic(expected = "a response body carries the credential")]
fn a_credential_in_any_response_fails_the_test_once_its_server_is_dropped() {
    let server = Server::start();
    assert_eq!(server.get("/v1/api-keys").status, 200);
    // Stands in for a leaked credential: every JSON answer carries it.
    register_secret("\"status\"");
    drop(server);
}
