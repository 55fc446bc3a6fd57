//! `GET /v1/changes`: the Listen stream as Server-Sent Events.
//!
//! Each change is an event whose id is its change id, so a browser that
//! reconnects (sending `Last-Event-ID`) resumes after the last change it
//! saw, with no gap. The stream is Listen's own, in process: a reader too
//! slow to keep up is cut off as Listen cuts off a gRPC client, and the
//! stream ends with an `end` event whose data is the `google.rpc.Status`
//! (a browser then reconnects and resumes).

use std::{convert::Infallible, time::Duration};

use axum::response::{
    IntoResponse, Response,
    sse::{Event, KeepAlive, Sse},
};
use futures::StreamExt;
use prost_reflect::{DynamicMessage, MethodDescriptor};

use super::{
    Web,
    errors::{error_response, status_json},
    transcode::{self, Forwarded, to_json},
};

/// How long a browser waits before reconnecting after the stream ends.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// Comments sent on an idle stream, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn serve(
    web: &Web,
    method: &MethodDescriptor,
    message: DynamicMessage,
    from: Forwarded,
) -> Response {
    let (metadata, mut changes) =
        match transcode::server_streaming(&web.grpc, method, message, from).await {
            Ok(answer) => answer,
            Err(status) => return error_response(&web.pool, &status),
        };
    // The first event, named `start` (it reaches no `onmessage`), carries
    // where the stream starts as its id and data: every browser keeps the
    // id of an event with data, so one cut off before any change sends it
    // back as `Last-Event-ID` and misses nothing.
    let mut first = Event::default().retry(RECONNECT_AFTER);
    if let Some(after) = abi::after_change_id(&metadata) {
        let after = after.to_string();
        first = first.event("start").id(&after).data(after);
    }
    let pool = web.pool.clone();
    let events = async_stream::stream! {
        yield Ok::<_, Infallible>(first.comment("listening"));
        while let Some(item) = changes.next().await {
            match item.and_then(|change| change_event(&change)) {
                Ok(event) => yield Ok(event),
                Err(status) => {
                    yield Ok(Event::default()
                        .event("end")
                        .data(status_json(&pool, &status).to_string()));
                    break;
                }
            }
        }
    };
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn change_event(change: &DynamicMessage) -> Result<Event, tonic::Status> {
    let id = change
        .get_field_by_name("change_id")
        .and_then(|value| value.as_i64())
        .unwrap_or_default();
    Ok(Event::default()
        .id(id.to_string())
        .data(to_json(change)?.to_string()))
}
