//! `/ws/events`: wirescope's typed event protocol over WebSocket.
//!
//! Every message is a JSON text frame `{"type": NAME, "data": …}`. The client sends
//! [`ClientMsg`]s; the server sends [`ServerEnvelope`]s: a [`ServerMsg`] plus its `seq` (per
//! connection, from 1) and the server's time `atUs`. The protocol version travels in
//! `welcome`.

use serde::{Deserialize, Serialize};

use crate::{Micros, StudentId};

/// Version of this protocol (in `welcome`).
pub const CHANNEL_VERSION: u32 = 1;
/// Largest message the server accepts; bigger ones close the connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Chat messages a room keeps and replays to whoever joins.
pub const ROOM_HISTORY: usize = 200;

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum ClientMsg {
    /// Introduces the client; answered with `welcome`.
    Hello {
        name: String,
    },
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    Chat {
        room: String,
        text: String,
    },
    /// Starts the ping-pong demo: the server sends `ping 1`, the client answers `pong 1`, …
    Pingpong {
        rounds: u32,
    },
    Pong {
        n: u32,
    },
}

/// Who someone is on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub client_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatLine {
    pub room: String,
    pub from: Peer,
    pub text: String,
    pub at_us: Micros,
}

/// What changed in the transcripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    StudentCreated,
    StudentDeleted,
    GradeAdded,
}

/// One change of the transcripts, as every change feed carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Position in the change feed: strictly increasing.
    pub seq: u64,
    pub kind: ChangeKind,
    #[serde(rename = "studentID")]
    pub student_id: StudentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course: Option<String>,
    /// When the change was committed (server clock).
    pub at_us: Micros,
    /// The event-log exchange (the REST request) that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<u64>,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum ServerMsg {
    /// `clientId` (protocol 1 sent `client_id`; still read, for one version).
    #[serde(rename_all = "camelCase")]
    Welcome {
        version: u32,
        #[serde(alias = "client_id")]
        client_id: String,
        connected: u32,
    },
    /// Someone connected (and said hello).
    Joined {
        peer: Peer,
        connected: u32,
    },
    /// Someone disconnected.
    Left {
        peer: Peer,
        connected: u32,
    },
    /// You are in `room` now; its recent messages follow as `history`.
    History {
        room: String,
        members: u32,
        messages: Vec<ChatLine>,
    },
    Chat(ChatLine),
    Ping {
        n: u32,
    },
    /// The ping-pong demo finished.
    PingpongDone {
        rounds: u32,
    },
    /// Every few seconds: how many `/ws/events` connections are open.
    Tick {
        watchers: u32,
    },
    TranscriptChanged(Change),
    /// A change in the pattern lab's scratch store (to members of room `lab`).
    LabChanged(Change),
    /// The pattern lab's figures (to members of room `lab`): every second while it runs,
    /// and once when it starts or stops.
    LabReport(crate::lab::LabReport),
    /// Something the client sent was not understood; the connection stays open.
    Error {
        message: String,
    },
}

/// A server message with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerEnvelope {
    #[serde(flatten)]
    pub msg: ServerMsg,
    pub seq: u64,
    pub at_us: Micros,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer { client_id: "c-1".into(), name: "Ana".into() }
    }

    #[test]
    fn client_messages_round_trip_with_their_exact_names() {
        let cases = [
            (ClientMsg::Hello { name: "Ana".into() }, r#"{"type":"hello","data":{"name":"Ana"}}"#),
            (ClientMsg::Join { room: "r".into() }, r#"{"type":"join","data":{"room":"r"}}"#),
            (ClientMsg::Leave { room: "r".into() }, r#"{"type":"leave","data":{"room":"r"}}"#),
            (
                ClientMsg::Chat { room: "r".into(), text: "hi".into() },
                r#"{"type":"chat","data":{"room":"r","text":"hi"}}"#,
            ),
            (ClientMsg::Pingpong { rounds: 3 }, r#"{"type":"pingpong","data":{"rounds":3}}"#),
            (ClientMsg::Pong { n: 2 }, r#"{"type":"pong","data":{"n":2}}"#),
        ];
        for (msg, json) in cases {
            assert_eq!(serde_json::to_string(&msg).unwrap(), json);
            assert_eq!(serde_json::from_str::<ClientMsg>(json).unwrap(), msg);
        }
    }

    #[test]
    fn server_messages_round_trip_with_seq_and_time() {
        let change = Change {
            seq: 4,
            kind: ChangeKind::GradeAdded,
            student_id: 2,
            course: Some("Net".into()),
            at_us: 9,
            cause: Some(77),
        };
        let line = ChatLine { room: "r".into(), from: peer(), text: "hi".into(), at_us: 5 };
        let all = [
            ServerMsg::Welcome { version: CHANNEL_VERSION, client_id: "c-1".into(), connected: 3 },
            ServerMsg::Joined { peer: peer(), connected: 3 },
            ServerMsg::Left { peer: peer(), connected: 2 },
            ServerMsg::History { room: "r".into(), members: 2, messages: vec![line.clone()] },
            ServerMsg::Chat(line),
            ServerMsg::Ping { n: 1 },
            ServerMsg::PingpongDone { rounds: 3 },
            ServerMsg::Tick { watchers: 7 },
            ServerMsg::TranscriptChanged(change.clone()),
            ServerMsg::LabChanged(change),
            ServerMsg::LabReport(crate::lab::LabReport {
                running: false,
                config: None,
                seconds: 1.5,
                changes: 3,
                failed: 1,
                problem: Some("refused".into()),
                patterns: vec![],
            }),
            ServerMsg::Error { message: "unknown type".into() },
        ];
        let welcome = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(welcome["data"]["clientId"], "c-1", "camelCase like every other message: {welcome}");
        let old: ServerMsg = serde_json::from_str(
            r#"{"type":"welcome","data":{"version":1,"client_id":"c-1","connected":3}}"#,
        )
        .unwrap();
        assert_eq!(old, all[0], "the old spelling is still read");
        for (i, msg) in all.into_iter().enumerate() {
            let env = ServerEnvelope { msg, seq: i as u64 + 1, at_us: 42 };
            let json = serde_json::to_value(&env).unwrap();
            assert!(json["type"].is_string() && json.get("data").is_some(), "{json}");
            assert_eq!(json["seq"], i as u64 + 1);
            assert_eq!(serde_json::from_value::<ServerEnvelope>(json).unwrap(), env);
        }
        let tick =
            serde_json::to_string(&ServerEnvelope { msg: ServerMsg::Tick { watchers: 2 }, seq: 1, at_us: 3 })
                .unwrap();
        assert_eq!(tick, r#"{"type":"tick","data":{"watchers":2},"seq":1,"atUs":3}"#);
        let changed = serde_json::to_value(ServerMsg::TranscriptChanged(Change {
            seq: 1,
            kind: ChangeKind::StudentCreated,
            student_id: 5,
            course: None,
            at_us: 1,
            cause: None,
        }))
        .unwrap();
        assert_eq!(changed["type"], "transcriptChanged");
        assert_eq!(changed["data"]["studentID"], 5);
        assert_eq!(changed["data"]["kind"], "studentCreated");
    }
}
