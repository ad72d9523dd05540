//! The Lua scripts behind every store operation, and how their arguments
//! are laid out.
//!
//! Each operation is one script, so it is atomic and costs one round trip.
//! The shared prelude (`lua/prelude.lua`: key layout, liveness, TTLs,
//! removal) and every script's body (`lua/<name>.lua`, each with a header
//! giving its keys, arguments and reply) make up one Redis Functions
//! library, loaded once per server (`FUNCTION LOAD`) and called with
//! `FCALL`: a call then runs only its own body, where a script sent with
//! `EVALSHA` runs the whole prelude again first (defining every helper
//! anew), which cost most of a read's time on the server. Servers without
//! Functions (before Redis 7) get each script as the prelude followed by
//! its body, with `EVALSHA`.
//!
//! The library's name and its functions' carry a digest of its text, so app
//! servers running different versions during a deploy each call their own.

use std::sync::LazyLock;

use redis::{Cmd, ToRedisArgs};
use sha2::{Digest, Sha256};

/// One script: its name, and its body (run after the prelude).
pub(super) struct Script {
    name: &'static str,
    body: &'static str,
    /// The prelude and the body as one script, for servers without
    /// Functions, and that script's SHA-1 (from `redis::Script`).
    eval_code: &'static str,
    eval: LazyLock<redis::Script>,
    /// The function's name in the library, made once rather than per call.
    function: LazyLock<String>,
}

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The prelude and a body as one script, for `EVALSHA`. A script sees KEYS
/// and ARGV as globals, which the prelude shadows with its own locals: they
/// are read first.
macro_rules! eval_code {
    ($file:literal) => {
        concat!(
            "local EVAL_KEYS, EVAL_ARGV = KEYS, ARGV\n",
            include_str!("lua/prelude.lua"),
            "\nbegin(EVAL_KEYS, EVAL_ARGV)\n",
            include_str!(concat!("lua/", $file, ".lua"))
        )
    };
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: Script = Script {
            name: $file,
            body: include_str!(concat!("lua/", $file, ".lua")),
            eval_code: eval_code!($file),
            eval: LazyLock::new(|| redis::Script::new(eval_code!($file))),
            function: LazyLock::new(|| format!("{}_{}", LIBRARY.prefix, $file)),
        };
    };
}

script!(LOAD, "load");
script!(CREATE, "create");
script!(SAVE, "save");
script!(ROTATE, "rotate");
script!(REGENERATE, "regenerate");
script!(LOGIN, "login");
script!(DESTROY, "destroy");
script!(LIST, "list");
script!(REVOKE, "revoke");
script!(SYNC_USER, "sync_user");
script!(CONNECT, "connect");
script!(FETCH, "fetch");
script!(CONNECTIONS, "connections");

const ALL: [&Script; 13] = [
    &LOAD,
    &CREATE,
    &SAVE,
    &ROTATE,
    &REGENERATE,
    &LOGIN,
    &DESTROY,
    &LIST,
    &REVOKE,
    &SYNC_USER,
    &CONNECT,
    &FETCH,
    &CONNECTIONS,
];

/// The Functions library: its source, and the prefix of its functions'
/// names.
pub(super) struct Library {
    pub(super) source: String,
    prefix: String,
}

pub(super) static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    digest.update(PRELUDE);
    for script in ALL {
        digest.update(script.name);
        digest.update(script.body);
    }
    let hex: String = digest.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix = format!("sessionkit_{hex}");
    let mut source = format!("#!lua name={prefix}\n{PRELUDE}\n");
    for script in ALL {
        // Each body becomes a function of the library: its locals and its
        // `return`s work as they do in a script.
        source.push_str(&format!(
            "redis.register_function('{prefix}_{}', function(keys, args)\nbegin(keys, args)\n{}\nend)\n",
            script.name, script.body
        ));
    }
    Library { source, prefix }
});

/// How the server runs scripts, found out when the store connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// `FCALL` of the loaded library.
    Functions,
    /// `EVALSHA` of prelude and body.
    Scripts,
}

/// A script call being put together: the command, with the key and the
/// arguments so far.
pub(super) struct Call {
    pub(super) script: &'static Script,
    pub(super) cmd: Cmd,
}

impl Call {
    /// A call of `script` on `key` in `mode`.
    pub(super) fn new(mode: Mode, script: &'static Script, key: &str) -> Call {
        let mut cmd = match mode {
            Mode::Functions => {
                let mut cmd = redis::cmd("FCALL");
                cmd.arg(script.function.as_str());
                cmd
            }
            Mode::Scripts => {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(script.eval.get_hash());
                cmd
            }
        };
        cmd.arg(1).arg(key);
        Call { script, cmd }
    }

    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// `SCRIPT LOAD` of this call's script, for a server that answered
    /// `NOSCRIPT`.
    pub(super) fn script_load(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.script.eval_code);
        cmd
    }
}

/// `FUNCTION LOAD REPLACE` of the library (on a cluster the client sends it
/// to every master).
pub(super) fn function_load() -> Cmd {
    let mut cmd = redis::cmd("FUNCTION");
    cmd.arg("LOAD").arg("REPLACE").arg(&LIBRARY.source);
    cmd
}
