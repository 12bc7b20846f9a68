//! One-line plain-text bodies, in the style of the relay's own errors, for the errors that
//! actix-web and actix-files send themselves. These are an unknown path, a method a route does
//! not take, a range past the end of a blob, and a path that cannot name a file.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};

use super::error::ApiError;

/// Maximum length of a method name quoted in a message. Longer ones are truncated.
const MAX_QUOTED_METHOD: usize = 16;

/// Returns middleware that gives a one-line message to every error response without one.
pub fn error_bodies<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(replace_body)
}

fn replace_body<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let own = response
        .response()
        .error()
        .is_some_and(|error| error.as_error::<ApiError>().is_some());
    if own {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }

    let request = response.request();
    let status = response.status();
    let cause = response.response().error().map(ToString::to_string);
    let message = describe(status, request.method(), request.path(), cause);
    let (request, mut response) = response.into_parts();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.remove(header::CONTENT_LENGTH);
    if status == StatusCode::METHOD_NOT_ALLOWED && !headers.contains_key(header::ALLOW) {
        // actix-files rejects other methods on the web page without naming the allowed ones.
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let response = response.set_body(message).map_into_boxed_body();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, response).map_into_right_body(),
    ))
}

/// Returns the message for an error `status` on `method` and `path`. `cause` is the text of
/// the error behind it, when there is one.
fn describe(status: StatusCode, method: &Method, path: &str, cause: Option<String>) -> String {
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => method_not_allowed(method, path),
        StatusCode::NOT_FOUND => "not found: the relay serves the chat page at /, and \
                                  /sub/<channel>, /pub/<channel>, /blob/, /healthz, /stats \
                                  and /metrics"
            .to_owned(),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            "range not satisfiable: the Content-Range header gives the size in bytes".to_owned()
        }
        StatusCode::BAD_REQUEST => match cause {
            Some(cause) => format!("invalid request: {cause}"),
            None => "invalid request".to_owned(),
        },
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase(),
    };
    // One line, whatever the cause's text contains.
    let mut line = message.replace(['\r', '\n'], " ");
    line.push('\n');
    line
}

fn method_not_allowed(method: &Method, path: &str) -> String {
    if path.starts_with("/pub/") {
        return "use POST to publish: POST /pub/<channel> with the envelope as application/json"
            .to_owned();
    }
    if path.starts_with("/sub/") {
        return "GET /sub/<channel> only: it opens the channel's event stream".to_owned();
    }
    if path.starts_with("/blob/") {
        return "use POST /blob/<channel> to upload a blob, or GET /blob/<id> to download one"
            .to_owned();
    }
    let method: String = method.as_str().chars().take(MAX_QUOTED_METHOD).collect();
    format!("method {method} is not allowed here: use GET or HEAD")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let cases = [
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "/pub/room",
                "use POST to publish",
            ),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "/sub/room",
                "GET /sub/<channel> only",
            ),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "/healthz",
                "method DELETE is not",
            ),
            (StatusCode::NOT_FOUND, "/nothing", "not found"),
            (StatusCode::BAD_REQUEST, "/..", "invalid request: a b"),
            (StatusCode::URI_TOO_LONG, "/", "uri too long"),
        ];
        for (status, path, expected) in cases {
            let text = describe(status, &Method::DELETE, path, Some("a\nb".to_owned()));
            assert!(text.starts_with(expected), "{status} {path}: {text}");
            assert_eq!(text.matches('\n').count(), 1, "{text:?}");
            assert!(text.ends_with('\n'));
        }
    }
}
