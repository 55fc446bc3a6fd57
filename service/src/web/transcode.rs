//! Calls of the gRPC services made in process from HTTP requests.
//!
//! A request's JSON becomes the RPC's request message by the proto's own
//! descriptors (the canonical proto3 JSON mapping), the call goes through
//! the very gRPC service a gRPC client reaches (authentication, limits,
//! logs and metrics included), and the answer comes back as a message to
//! turn into JSON. No handler is written twice.

use std::{convert::Infallible, str::FromStr};

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use tonic::{
    Request, Status, Streaming,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::{self, HeaderMap, uri::PathAndQuery},
    metadata::MetadataMap,
};
use tower::util::BoxCloneSyncService;

/// The gRPC services as one in-process service.
pub type GrpcService = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// What answers the paths the web routes do not: the gRPC services, for
/// gRPC and gRPC-Web clients.
pub type Fallback = BoxCloneSyncService<
    http::Request<axum::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// Every message and service of the API, and of the `google.rpc` error
/// details, by name.
pub fn descriptors() -> anyhow::Result<DescriptorPool> {
    let mut pool = DescriptorPool::new();
    pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)?;
    pool.decode_file_descriptor_set(abi::pb::FILE_DESCRIPTOR_SET)?;
    Ok(pool)
}

/// What a call carries over from the HTTP request it came in: its
/// credentials and its connection (the peer's address and certificates).
pub struct Forwarded {
    pub authorization: Option<http::HeaderValue>,
    pub extensions: http::Extensions,
}

impl Forwarded {
    pub fn from_request(headers: &HeaderMap, mut extensions: http::Extensions) -> Self {
        // Only authentication decides who calls.
        extensions.remove::<abi::Caller>();
        Forwarded {
            authorization: headers.get(http::header::AUTHORIZATION).cloned(),
            extensions,
        }
    }

    fn request(self, message: DynamicMessage) -> Request<DynamicMessage> {
        let mut headers = HeaderMap::new();
        if let Some(authorization) = self.authorization {
            headers.insert(http::header::AUTHORIZATION, authorization);
        }
        Request::from_parts(MetadataMap::from_headers(headers), self.extensions, message)
    }
}

/// The largest answer decoded from the in-process call: answers are the
/// server's own, bounded by its limits (an Availability of 100 resources
/// over 92 days with small slots runs to megabytes).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// A client of the in-process services, ready for a call.
async fn client(grpc: &GrpcService) -> Result<tonic::client::Grpc<GrpcService>, Status> {
    let mut client =
        tonic::client::Grpc::new(grpc.clone()).max_decoding_message_size(MAX_ANSWER_BYTES);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(format!("service not ready: {e}")))?;
    Ok(client)
}

/// Calls `method` with `message`, for its one answer.
pub async fn unary(
    grpc: &GrpcService,
    method: &MethodDescriptor,
    message: DynamicMessage,
    from: Forwarded,
) -> Result<DynamicMessage, Status> {
    let answer = client(grpc)
        .await?
        .unary(from.request(message), path(method)?, codec(method))
        .await?;
    Ok(answer.into_inner())
}

/// Calls `method` with `message`, for its stream of answers.
pub async fn server_streaming(
    grpc: &GrpcService,
    method: &MethodDescriptor,
    message: DynamicMessage,
    from: Forwarded,
) -> Result<(tonic::metadata::MetadataMap, Streaming<DynamicMessage>), Status> {
    let answer = client(grpc)
        .await?
        .server_streaming(from.request(message), path(method)?, codec(method))
        .await?;
    let (metadata, stream, _) = answer.into_parts();
    Ok((metadata, stream))
}

fn path(method: &MethodDescriptor) -> Result<PathAndQuery, Status> {
    PathAndQuery::from_str(&format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .map_err(|e| Status::internal(format!("method path: {e}")))
}

fn codec(method: &MethodDescriptor) -> DynamicCodec {
    DynamicCodec {
        output: method.output(),
    }
}

/// Encodes any message; decodes messages of one type.
#[derive(Clone)]
struct DynamicCodec {
    output: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.output.clone())
    }
}

struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the answer: {e}")))
    }
}

/// A message as canonical proto3 JSON: lowerCamelCase names, fields at
/// their defaults left out, 64-bit integers as strings, enums by name.
///
/// # Errors
/// `INTERNAL` when the message holds what JSON cannot say (a timestamp
/// past year 9999, say): never an answer that reads as a success.
pub fn to_json(message: &DynamicMessage) -> Result<serde_json::Value, Status> {
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| {
            tracing::error!(error = %e, "an answer cannot be written as JSON");
            Status::internal("the answer cannot be written as JSON")
        })
}

/// `value` as a message of type `descriptor`, in the canonical proto3 JSON
/// mapping (either field name form). Unknown fields are refused.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the field that does not fit.
pub fn from_json(
    descriptor: MessageDescriptor,
    value: serde_json::Value,
) -> Result<DynamicMessage, Status> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(descriptor, tracked, &DeserializeOptions::new())
        .map_err(|e| {
            let path = track.path().to_string();
            let field = if path == "." || path.is_empty() {
                "body"
            } else {
                path.as_str()
            };
            abi::invalid_argument(field, &e.to_string())
        })
}
