//! `POST /blob/{channel}` stores an encrypted blob for a room; `GET /blob/{id}` serves it.
//!
//! The relay receives only ciphertext here too: the page encrypts a file before uploading it
//! and sends the id to the room inside an encrypted message.

use actix_files::NamedFile;
use actix_web::http::header::{self, ContentDisposition, DispositionType};
use actix_web::{HttpRequest, HttpResponse, mime, web};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::publish::content_length;
use crate::blob::{BlobError, BlobId};
use crate::body::TimedBody;
use crate::channel::ChannelId;
use crate::client::ClientKey;

/// The 201 response body.
#[derive(Serialize)]
struct Uploaded {
    /// The blob's id, for `GET /blob/{id}`.
    id: String,
    /// The blob's size in bytes.
    bytes: u64,
}

/// Stores the request body as a blob, if the channel has subscribers.
pub async fn upload(
    state: web::Data<AppState>,
    name: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let channel = ChannelId::parse(&name)?;
    state.check_rate(&state.upload_rate, &request)?;
    let declared = content_length(&request)?;
    if state.broker.subscribers(channel.clone()).await? == 0 {
        return Err(ApiError::NoSubscribers { channel });
    }

    let client = state.client_address(&request).map(ClientKey::of);
    let timed = TimedBody::new(payload, state.body_timeouts.idle, None);
    let stored = state
        .blobs
        .store(timed, declared, client)
        .await
        .map_err(|e| state.body_failed(&request, e))?;
    tracing::debug!(%channel, bytes = stored.bytes, "blob stored");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/blob/{}", stored.id)))
        .json(Uploaded {
            id: stored.id.to_string(),
            bytes: stored.bytes,
        }))
}

/// Serves a blob's bytes, never cached and never sniffed as another type.
pub async fn download(
    state: web::Data<AppState>,
    name: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = BlobId::parse(&name)?;
    let path = state.blobs.path(id).await?;

    // The sweeper may delete the file between the check and the open; an open file stays
    // readable after that.
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file.into_std().await,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BlobError::NotFound { id }.into());
        }
        Err(source) => {
            return Err(BlobError::Io {
                operation: "open",
                path,
                source,
            }
            .into());
        }
    };
    let named = NamedFile::from_file(file, &path).map_err(|source| BlobError::Io {
        operation: "read the metadata of",
        path: path.clone(),
        source,
    })?;

    let mut response = named
        .set_content_type(mime::APPLICATION_OCTET_STREAM)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: Vec::new(),
        })
        .use_etag(false)
        .use_last_modified(false)
        .into_response(&request);
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
