//! The parts of `/openapi.json` that every operation shares.
//!
//! Each handler's `#[utoipa::path]` lists the answers particular to it. The
//! refusals of the request layer (no key, a body that is not JSON, a body
//! too large) and the failures of the server itself can come from any
//! operation, so they are added here, once, to every operation that does
//! not already document them. The fuzz run (`reliability/fuzz-api`) checks
//! every answer against this document, so an answer missing from it fails
//! that run.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Answers any operation that takes a key can give, besides its own.
const SECURED: &[(&str, &str)] = &[
    (
        "400",
        "The request is malformed: a body that is not JSON, or a bad header such as `Idempotency-Key`",
    ),
    (
        "401",
        "No key, or a key that is unknown or revoked (`unauthorized`)",
    ),
    (
        "403",
        "The key lacks the scope this operation needs (`forbidden`)",
    ),
    (
        "413",
        "The body is larger than the server takes (`payload_too_large`)",
    ),
    (
        "415",
        "The body is not sent with the content type this operation takes",
    ),
    (
        "422",
        "The body or a parameter is not valid (`invalid_input`); `errors` names each failing field",
    ),
];

/// Answers any operation at all can give.
const ANY: &[(&str, &str)] = &[
    (
        "500",
        "An internal error (`internal`); the server log has the details under the answer's `x-request-id`",
    ),
    (
        "503",
        "Storage is unavailable or the server is stopping (`unavailable`); nothing was done, try again",
    ),
    (
        "507",
        "The server's storage is full (`unavailable`): the request was not recorded; the server takes no more until it is restarted with space freed",
    ),
];

/// Adds the shared answers to every operation.
pub(super) fn complete(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = !operation
                .security
                .as_ref()
                .is_some_and(|requirements| requirements.iter().all(|r| r == &Default::default()));
            if secured {
                add_errors(operation, SECURED);
                if path.contains('{') {
                    add_errors(
                        operation,
                        &[("404", "No such object in the key's tenant (`not_found`)")],
                    );
                }
            }
            if takes_idempotency_key(operation) {
                add_errors(
                    operation,
                    &[(
                        "409",
                        "The `Idempotency-Key` was used with a different request, or its first request is still running (`conflict`)",
                    )],
                );
            }
            add_errors(operation, ANY);
            non_empty_path_parameters(operation);
            idempotency_key_form(operation);
        }
    }
}

/// Documents each answer with the shared error body. An answer the
/// operation already documents with another body (Flowdash's 422 of unmet
/// requirements) may also come as the shared body, when the request layer
/// refuses the request before the operation sees it: its schema becomes
/// one of the two.
fn add_errors(operation: &mut Operation, errors: &[(&str, &str)]) {
    let error_body: RefOr<Schema> = Ref::from_schema_name("ErrorBody").into();
    for (status, description) in errors {
        match operation.responses.responses.get_mut(*status) {
            None => {
                let response = ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(error_body.clone()))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), response.into());
            }
            Some(RefOr::T(response)) => {
                let Some(content) = response.content.get_mut("application/json") else {
                    continue;
                };
                match &content.schema {
                    Some(RefOr::Ref(existing)) if existing.ref_location.ends_with("/ErrorBody") => {
                    }
                    Some(existing) => {
                        let either = OneOfBuilder::new()
                            .item(existing.clone())
                            .item(error_body.clone())
                            .build();
                        content.schema = Some(Schema::OneOf(either).into());
                    }
                    None => content.schema = Some(error_body.clone()),
                }
            }
            Some(RefOr::Ref(_)) => {}
        }
    }
}

/// A path parameter is never empty: `/v1/actions//cancel` is not an action
/// with the empty id, and `/v1/actions/cancel` is another route.
fn non_empty_path_parameters(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.parameter_in != ParameterIn::Path {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema {
            schema.min_length.get_or_insert(1);
        }
    }
}

/// An `Idempotency-Key` is 1 to 255 visible ASCII characters
/// (`KeyedRequest::new` refuses anything else).
fn idempotency_key_form(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.parameter_in == ParameterIn::Header
            && parameter.name.eq_ignore_ascii_case("Idempotency-Key")
            && let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema
        {
            schema.pattern = Some("^[!-~]{1,255}$".into());
        }
    }
}

fn takes_idempotency_key(operation: &Operation) -> bool {
    operation.parameters.iter().flatten().any(|parameter| {
        parameter.parameter_in == ParameterIn::Header
            && parameter.name.eq_ignore_ascii_case("Idempotency-Key")
    })
}
