//! The protobuf codec of every generated stub: prost's, with a smaller first buffer.
//!
//! tonic's default codec starts each call's encode and decode buffers at 8 KiB. Nearly every
//! message here (a Reserve, a Check of one position, their answers) is under 256 bytes, and on
//! the unary hot path that allocation showed up as several percent of server CPU. The buffers
//! still grow as needed, so a Check of 1,000 positions or a sales batch is unaffected.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// First size of a call's encode and decode buffers, in bytes.
pub const BUFFER_BYTES: usize = 1024;

/// Messages larger than this let other tasks run between encoding them (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// prost encoding with [`BUFFER_BYTES`] first buffers; named in `build.rs` as the codec path.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
