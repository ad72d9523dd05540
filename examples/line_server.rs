//! Sessions without HTTP: a line-based TCP service on
//! [`SessionManager::open`](sessionkit::SessionManager::open).
//!
//! Each request is one line: the client's token (or `-` without one), a
//! command and its arguments. Each answer is one line: what the client must
//! do with its token, then the result.
//!
//! ```text
//! request:  <token | -> GET <key> | SET <key> <value> | PEEK <key>
//!                      | LOGIN <name> | LOGOUT | WHOAMI
//! answer:   <= | +new-token | -> <result>
//! ```
//!
//! `=` keeps the token, `+token` replaces it (a new session, a login, a
//! rotation), `-` drops it (a logout). `PEEK` reads without extending the
//! session's idle deadline. Try it:
//!
//! ```text
//! cargo run --example line_server          # listens on 127.0.0.1:4000
//! nc 127.0.0.1 4000
//! - SET colour blue
//! +Uq3…Zw OK
//! Uq3…Zw GET colour
//! = blue
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::{
    Access, CommitError, MemoryStore, Regeneration, Session, SessionLayer, SessionManager,
    SessionUser, TokenUpdate,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The logged-in user of this service.
#[derive(Serialize, Deserialize)]
pub struct Account {
    pub name: String,
}

impl SessionUser for Account {
    fn id(&self) -> String {
        self.name.clone()
    }
}

/// Serves clients until the listener fails.
pub async fn serve(listener: TcpListener, manager: SessionManager) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let manager = manager.clone();
        tokio::spawn(async move {
            if let Err(err) = client(stream, &manager).await {
                eprintln!("client: {err}");
            }
        });
    }
}

/// At most this many bytes per line: longer ones end the connection.
const MAX_LINE: usize = 4096;

async fn client(stream: TcpStream, manager: &SessionManager) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await?;
        if n == 0 || (n == MAX_LINE && !line.ends_with('\n')) {
            return Ok(());
        }
        let answer = answer(manager, line.trim_end()).await;
        write.write_all(answer.as_bytes()).await?;
        write.write_all(b"\n").await?;
    }
}

/// One request line's answer line.
pub async fn answer(manager: &SessionManager, line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    let token = words.next().filter(|t| *t != "-");
    let command = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("");
    let access = if command == "PEEK" {
        Access::new().silent()
    } else {
        Access::new()
    };
    let session = match manager.open_with(token, access).await {
        Ok(session) => session,
        Err(err) => return format!("= ERR {err}"),
    };
    let result = run(&session, command, rest).await;
    // Commit even after a failed command: a login that went through must
    // still reach the client.
    let (update, committed) = match session.commit().await {
        Ok(update) => (update, Ok(())),
        Err(CommitError { error, update }) => (update, Err(error)),
    };
    let update = match update {
        TokenUpdate::Replace(token) => format!("+{}", token.as_str()),
        TokenUpdate::Drop => "-".to_owned(),
        _ => "=".to_owned(),
    };
    match (result, committed) {
        (Ok(result), Ok(())) => format!("{update} {result}"),
        (Err(err), _) | (_, Err(err)) => format!("{update} ERR {err}"),
    }
}

async fn run(session: &Session, command: &str, rest: &str) -> Result<String, sessionkit::Error> {
    Ok(match command {
        "GET" | "PEEK" => session
            .get::<String>(rest)?
            .unwrap_or_else(|| "(nil)".into()),
        "SET" => {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            session.insert(key, value)?;
            "OK".into()
        }
        "LOGIN" if !rest.is_empty() => {
            session.login(&Account { name: rest.into() }).await?;
            "OK".into()
        }
        "LOGOUT" => {
            session.logout().await?;
            "OK".into()
        }
        "WHOAMI" => session.user_id().unwrap_or_else(|| "(anonymous)".into()),
        _ => "ERR unknown command".into(),
    })
}

#[allow(dead_code)] // the tests include this file for `serve` and `answer`
#[tokio::main]
async fn main() -> std::io::Result<()> {
    // The layer's builder holds every session setting; its cookie settings
    // go unused here.
    let manager = SessionLayer::builder(MemoryStore::new())
        .regeneration(Regeneration::every(Duration::from_secs(15 * 60)))
        .build()
        .manager();
    let listener = TcpListener::bind("127.0.0.1:4000").await?;
    println!("listening on {}", listener.local_addr()?);
    serve(listener, manager).await
}
