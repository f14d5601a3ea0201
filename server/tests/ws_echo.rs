//! `/ws/echo` over a real socket on port 0.

mod common;

use common::{TestServer, next_frame as next};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn echoes_text_and_binary_and_answers_the_close_handshake() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let (mut ws, res) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    assert_eq!(res.status(), 101);

    ws.send(Message::text("hello wire")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello wire"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong(b"p".to_vec().into()));

    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the close reply, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_closes_open_echoes_with_1001() {
    let s = TestServer::without_app();
    let (addr, task) = s.spawn().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("still here"));
    s.state.shutdown().trigger();
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    drop(ws);
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("server did not stop")
        .unwrap();
}
