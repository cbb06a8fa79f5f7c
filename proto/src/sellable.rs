//! `CheckSellableRequest`, written by hand so its skus cost no allocation each.
//!
//! prost decodes every `string` into a `String` of its own: for a CheckSellable of 1,000 skus
//! that is 1,000 allocations and frees per call on the server, and as many on a Rust client
//! building the request. prost has no option for other string types (zero-copy `Bytes`
//! slices, tried first, cost more: an atomic reference count per sku), so this one message
//! implements [`prost::Message`] itself and keeps its skus in [`Skus`]: one text buffer and
//! where each sku ends. The wire format is the `.proto`'s exactly, and decoding checks UTF-8
//! as prost does; `build.rs` points the generated code here with `extern_path`, so the server
//! stub and the Rust client both use this type, and clients in other languages are
//! unaffected.

use bytes::{Buf, BufMut};
use prost::DecodeError;
use prost::encoding::{self, DecodeContext, WireType};
use std::fmt;

/// Many skus at one location, answered compactly (see the `.proto`).
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct CheckSellableRequest {
    /// The location every sku is read at.
    pub location: String,
    /// 1 to 1,000 skus (a sku may repeat; each is answered).
    pub skus: Skus,
}

impl CheckSellableRequest {
    /// A request for `skus` at `location`.
    pub fn new<S: AsRef<str>>(
        location: impl Into<String>,
        skus: impl IntoIterator<Item = S>,
    ) -> Self {
        CheckSellableRequest {
            location: location.into(),
            skus: skus.into_iter().collect(),
        }
    }
}

/// A list of skus in one buffer: pushing one copies its bytes, with no allocation of its own.
#[derive(Clone, Default)]
pub struct Skus {
    /// Every sku, one after another.
    text: String,
    /// Where each sku ends in `text` (the next begins there).
    ends: Vec<usize>,
    /// Decoding reads each sku here first, so prost checks its UTF-8; kept for its capacity.
    spare: String,
}

impl Skus {
    pub fn push(&mut self, sku: &str) {
        self.text.push_str(sku);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// The skus in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            // Always a whole sku: `ends` only ever marks the end of one pushed `&str`.
            let sku = self.text.get(start..end).unwrap_or_default();
            start = end;
            sku
        })
    }
}

impl<S: AsRef<str>> FromIterator<S> for Skus {
    fn from_iter<I: IntoIterator<Item = S>>(skus: I) -> Self {
        let mut list = Skus::default();
        for sku in skus {
            list.push(sku.as_ref());
        }
        list
    }
}

impl PartialEq for Skus {
    fn eq(&self, other: &Skus) -> bool {
        self.text == other.text && self.ends == other.ends
    }
}

impl Eq for Skus {}

impl fmt::Debug for Skus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

const LOCATION_TAG: u32 = 1;
const SKUS_TAG: u32 = 2;

impl prost::Message for CheckSellableRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.location.is_empty() {
            encoding::string::encode(LOCATION_TAG, &self.location, buf);
        }
        for sku in self.skus.iter() {
            encoding::encode_key(SKUS_TAG, WireType::LengthDelimited, buf);
            encoding::encode_varint(sku.len() as u64, buf);
            buf.put_slice(sku.as_bytes());
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (merged, field) = match tag {
            LOCATION_TAG => (
                encoding::string::merge(wire_type, &mut self.location, buf, ctx),
                "location",
            ),
            SKUS_TAG => {
                let skus = &mut self.skus;
                let merged = encoding::string::merge(wire_type, &mut skus.spare, buf, ctx);
                if merged.is_ok() {
                    skus.text.push_str(&skus.spare);
                    skus.ends.push(skus.text.len());
                }
                (merged, "skus")
            }
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        merged.map_err(|mut e| {
            e.push("CheckSellableRequest", field);
            e
        })
    }

    fn encoded_len(&self) -> usize {
        let location = if self.location.is_empty() {
            0
        } else {
            encoding::string::encoded_len(LOCATION_TAG, &self.location)
        };
        let skus: usize = self
            .skus
            .iter()
            .map(|sku| encoding::encoded_len_varint(sku.len() as u64) + sku.len())
            .sum();
        location + encoding::key_len(SKUS_TAG) * self.skus.len() + skus
    }

    fn clear(&mut self) {
        self.location.clear();
        self.skus.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The generated form of the same message, as any other client would encode it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(string, tag = "1")]
        location: String,
        #[prost(string, repeated, tag = "2")]
        skus: Vec<String>,
    }

    #[test]
    fn the_wire_format_is_the_generated_one() {
        let ours = CheckSellableRequest::new("dc-1", ["sku-1", "", "ü-2"]);
        let theirs = Generated {
            location: "dc-1".to_owned(),
            skus: vec!["sku-1".to_owned(), String::new(), "ü-2".to_owned()],
        };
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
        let back = CheckSellableRequest::decode(theirs.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, ours);
        assert_eq!(
            Generated::decode(ours.encode_to_vec().as_slice()).unwrap(),
            theirs
        );
        // Nothing set, nothing sent.
        assert!(CheckSellableRequest::default().encode_to_vec().is_empty());
    }

    #[test]
    fn skus_keep_their_order_and_bounds() {
        let skus: Skus = ["a", "", "bc", "ü"].into_iter().collect();
        assert_eq!(skus.iter().collect::<Vec<_>>(), ["a", "", "bc", "ü"]);
        assert_eq!(skus.len(), 4);
        assert_eq!(format!("{skus:?}"), r#"["a", "", "bc", "ü"]"#);
        let mut decoded = CheckSellableRequest::decode(
            CheckSellableRequest::new("x", skus.iter())
                .encode_to_vec()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(
            decoded.skus, skus,
            "the spare buffer is not part of equality"
        );
        decoded.skus.clear();
        assert!(decoded.skus.is_empty() && decoded.skus.iter().next().is_none());
    }

    #[test]
    fn malformed_messages_are_decode_errors_naming_the_field() {
        // A length past the end of the message.
        let mut wire = Vec::new();
        encoding::encode_key(SKUS_TAG, WireType::LengthDelimited, &mut wire);
        encoding::encode_varint(9, &mut wire);
        wire.extend_from_slice(b"abc");
        let error = CheckSellableRequest::decode(wire.as_slice()).unwrap_err();
        assert!(error.to_string().contains("skus"), "{error}");

        // The wrong wire type for skus.
        let mut wire = Vec::new();
        encoding::encode_key(SKUS_TAG, WireType::Varint, &mut wire);
        encoding::encode_varint(1, &mut wire);
        let error = CheckSellableRequest::decode(wire.as_slice()).unwrap_err();
        assert!(error.to_string().contains("skus"), "{error}");

        // Not UTF-8, in a sku and in the location.
        for tag in [SKUS_TAG, LOCATION_TAG] {
            let mut wire = Vec::new();
            encoding::bytes::encode(tag, &vec![b'a', 0xff], &mut wire);
            let error = CheckSellableRequest::decode(wire.as_slice()).unwrap_err();
            let field = if tag == SKUS_TAG { "skus" } else { "location" };
            assert!(error.to_string().contains(field), "{error}");
            assert!(error.to_string().contains("UTF-8"), "{error}");
        }

        // Unknown fields are skipped, as prost's generated messages do.
        let mut wire = CheckSellableRequest::new("dc-1", ["x"]).encode_to_vec();
        encoding::encode_key(9, WireType::Varint, &mut wire);
        encoding::encode_varint(5, &mut wire);
        let back = CheckSellableRequest::decode(wire.as_slice()).unwrap();
        assert_eq!(back, CheckSellableRequest::new("dc-1", ["x"]));
    }
}
