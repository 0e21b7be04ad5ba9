//! Decoding replies without buffering them: derived `flatten` and
//! internally tagged enums first copy the whole value into an untyped
//! tree, which for a 20,000-region layout cost more than everything else
//! a `query` does. The envelope is read field by field, and a layout
//! (whose `type` tag the daemon writes first) straight into [`Layout`];
//! other replies are small and go through the derived decoder.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer},
};

use super::{ErrorKind, ErrorReply, PROTOCOL_VERSION, Reply, ReplyBody, ReplyEnvelope};
use crate::report::Layout;

impl<'de> Deserialize<'de> for ReplyEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = ReplyEnvelope;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reply envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReplyEnvelope, A::Error> {
        let mut version: Option<u32> = None;
        let mut body = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => version = Some(map.next_value()?),
                // Another release's reply: only its version is of use.
                "ok" | "error" if version.is_some_and(|v| v != PROTOCOL_VERSION) => {
                    map.next_value::<IgnoredAny>()?;
                }
                "ok" => body = Some(ReplyBody::Ok(map.next_value::<FastReply>()?.0)),
                "error" => body = Some(ReplyBody::Error(map.next_value()?)),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let version = version.ok_or_else(|| <A::Error as de::Error>::missing_field("version"))?;
        let body = match body {
            Some(body) => body,
            None if version != PROTOCOL_VERSION => ReplyBody::Error(ErrorReply {
                kind: ErrorKind::VersionMismatch,
                message: format!("the daemon speaks protocol version {version}"),
            }),
            None => return Err(de::Error::custom("a reply with neither `ok` nor `error`")),
        };
        Ok(ReplyEnvelope { version, body })
    }
}

/// A [`Reply`], decoded directly when it is a layout tagged up front.
struct FastReply(Reply);

impl<'de> Deserialize<'de> for FastReply {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ReplyVisitor)
    }
}

struct ReplyVisitor;

impl<'de> Visitor<'de> for ReplyVisitor {
    type Value = FastReply;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reply")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastReply, A::Error> {
        use serde_json::Value;
        let mut object = serde_json::Map::new();
        if let Some(first) = map.next_key::<String>()? {
            let value = if first == "type" {
                let tag: String = map.next_value()?;
                if tag == "layout" {
                    let layout = Layout::deserialize(MapAccessDeserializer::new(map))?;
                    return Ok(FastReply(Reply::Layout(Box::new(layout))));
                }
                Value::String(tag)
            } else {
                map.next_value()?
            };
            object.insert(first, value);
        }
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            object.insert(key, value);
        }
        Reply::deserialize(Value::Object(object))
            .map(FastReply)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{VerifyReport, encode};

    fn round_trip(envelope: &ReplyEnvelope) -> ReplyEnvelope {
        let frame = encode(envelope).unwrap();
        serde_json::from_slice(&frame[4..]).unwrap()
    }

    fn layout() -> Layout {
        serde_json::from_value(serde_json::json!({
            "pid": 42, "comm": "x", "exe": "/bin/x", "uid": 0, "elf": null,
            "aslr": {"status": "full", "reasons": []}, "wx": [], "heap": null,
            "regions": [{
                "start": "0x1000", "end": "0x2000", "size": 4096, "perms": "r--p",
                "offset": 0, "path": "/bin/x", "kind": "file",
                "object": null, "segment": null, "sections": [".text"]
            }],
            "gaps": [], "totals": {"file": 4096}, "mapped_bytes": 4096,
        }))
        .unwrap()
    }

    #[test]
    fn every_reply_survives_the_fast_decoder() {
        let replies = [
            ReplyEnvelope::ok(Reply::Layout(Box::new(layout()))),
            ReplyEnvelope::ok(Reply::Pong {
                daemon_pid: 1,
                tracked_processes: 2,
                version: "0.1".into(),
            }),
            ReplyEnvelope::ok(Reply::Verify(VerifyReport {
                pid: 3,
                start_time_ticks: Some(9),
                comm: "c".into(),
                agree: true,
                model_regions: 1,
                kernel_regions: 1,
                differences: vec![],
            })),
            ReplyEnvelope::ok(Reply::Processes {
                processes: vec![],
                max_map_count: Some(65530),
            }),
            ReplyEnvelope::error(ErrorKind::NoSuchPid, "gone"),
        ];
        for reply in replies {
            let back = round_trip(&reply);
            // Debug output covers every field of every type involved.
            assert_eq!(format!("{back:?}"), format!("{reply:?}"));
        }
    }

    #[test]
    fn a_layout_tagged_last_still_decodes() {
        let mut value = serde_json::to_value(layout()).unwrap();
        value["type"] = "layout".into();
        let text = format!(r#"{{"version":{PROTOCOL_VERSION},"ok":{value}}}"#);
        let back: ReplyEnvelope = serde_json::from_str(&text).unwrap();
        assert!(matches!(back.body, ReplyBody::Ok(Reply::Layout(l)) if l.pid == 42));
    }

    #[test]
    fn another_version_is_told_apart_before_its_shape() {
        let text = r#"{"version":99,"ok":{"type":"something_new","x":[1]}}"#;
        let back: ReplyEnvelope = serde_json::from_str(text).unwrap();
        assert_eq!(back.version, 99);
        assert!(matches!(back.body, ReplyBody::Error(e) if e.kind == ErrorKind::VersionMismatch));
        let missing: Result<ReplyEnvelope, _> = serde_json::from_str(r#"{"version":1}"#);
        assert!(missing.is_err());
    }
}
