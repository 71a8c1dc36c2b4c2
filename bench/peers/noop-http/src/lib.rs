//! The peer of actionhost's sync execute endpoint in the benchmark suite: a
//! wasi:http handler that reads the request body and answers a small JSON
//! document, as the no-op plugin does, for `wasmtime serve` to host.

// Only the wasm build exports the handler; a native `cargo build --workspace`
// compiles an empty library.
#[cfg(target_family = "wasm")]
mod handler {
    use std::io::{Read as _, Write as _};

    use wasip2::http::types::{
        Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };

    wasip2::http::proxy::export!(Noop);

    struct Noop;

    impl wasip2::exports::http::incoming_handler::Guest for Noop {
        fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
            // Read the body, as the execute endpoint does with its JSON.
            if let Ok(body) = request.consume()
                && let Ok(mut stream) = body.stream()
            {
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
            }
            let headers = Fields::new();
            let _ = headers.set("content-type", &[b"application/json".to_vec()]);
            let response = OutgoingResponse::new(headers);
            let Ok(body) = response.body() else { return };
            ResponseOutparam::set(response_out, Ok(response));
            if let Ok(mut out) = body.write() {
                let _ = out.write_all(br#"{"successful":true,"data":{}}"#);
                let _ = out.flush();
            }
            let _ = OutgoingBody::finish(body, None);
        }
    }
}
