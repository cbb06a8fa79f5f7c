//! The gRPC contract of the inventory engine, `inventory.v1`.
//!
//! The source of truth is `proto/inventory/v1/inventory.proto`; this crate only compiles it.
//! [`inventory::v1`] holds the messages and the `Inventory` client and server stubs, and
//! [`FILE_DESCRIPTOR_SET`] the encoded descriptors the server registers for reflection, so
//! `grpcurl` works without a local copy of the `.proto` files.
//!
//! The package is versioned from day one: a breaking change goes into `inventory.v2` beside it.

pub mod codec;
pub mod sellable;

pub mod inventory {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("inventory.v1");
        // Written by hand (see `sellable`), in its place among the generated messages.
        pub use crate::sellable::CheckSellableRequest;
    }
}

pub use inventory::v1;

/// The encoded `FileDescriptorSet` of every file in `inventory.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/inventory_descriptor.bin"));

/// The canonical upper-case name of a gRPC status code (`NOT_FOUND`), as the gRPC spec and
/// grpcurl print it: what the CLI and the load tool show and put in JSON.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
