//! The gRPC codec of the generated clients and servers: protobuf by prost,
//! written and read as one contiguous buffer.
//!
//! tonic's prost codec encodes straight into its `BytesMut`, where every
//! byte of every varint goes through `put_slice` (a call and a copy each),
//! and decodes through the chunked `Buf` interface. For a large message —
//! an Availability answer of 3,360 slots is 67 KB — that costs 2–3 times
//! the encoding itself. This codec encodes into a `Vec` and copies it once,
//! and decodes from the message's bytes as one slice (tonic gathers a
//! message into one buffer before decoding it). The bytes on the wire are
//! the same.

use std::marker::PhantomData;

use prost::{
    Message,
    bytes::{Buf, BufMut},
};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// A [`Codec`] for `application/grpc+proto` by prost; `T` is sent, `U`
/// received.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

/// Encodes `T` into a buffer of its own, then into tonic's in one copy.
#[derive(Debug, Clone, Default)]
pub struct ProstEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ProstEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item.encode_to_vec());
        Ok(())
    }
}

/// Decodes `U` from the message's bytes as one slice.
#[derive(Debug, Clone, Default)]
pub struct ProstDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let item = if buf.chunk().len() >= len {
            let item = U::decode(&buf.chunk()[..len]);
            buf.advance(len);
            item
        } else {
            U::decode(buf)
        };
        // As tonic's own codec: a message that does not parse is INTERNAL.
        item.map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}
