//! SQLite with the appliance's discipline: one writer thread that applies
//! everything queued in one transaction (group commit: one WAL fsync for
//! the batch), each operation in its own savepoint so one failure undoes
//! only itself, and answers only after the commit; reads on a small pool
//! of connections on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Most operations committed together.
const MAX_BATCH: usize = 256;
/// Read connections kept open.
const READERS: usize = 4;

/// Sends an operation's answer once its batch's fate is known.
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One queued write, its result type erased.
trait PendingWrite: Send {
    /// Runs the write in its savepoint: on success, how to answer once the
    /// commit is known; on failure it has answered already (`None`), and the
    /// savepoint is rolled back.
    fn run(self: Box<Self>, conn: &Connection) -> Option<Finish>;
    /// Answers with `error` without running.
    fn fail(self: Box<Self>, error: StoreError);
}

struct Pending<T, F> {
    f: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> PendingWrite for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Option<Finish> {
        let Pending { f, reply } = *self;
        match f(conn) {
            Ok(value) => Some(Box::new(move |committed: Result<(), StoreError>| {
                let _ = reply.send(committed.map(|()| value));
            })),
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

type WriteOp = Box<dyn PendingWrite>;

/// The database: a writer thread and a read pool.
#[derive(Clone)]
pub(crate) struct Db {
    writer: mpsc::Sender<WriteOp>,
    readers: Arc<Readers>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

impl Db {
    /// Opens (creating and migrating) the database at `path` and starts the
    /// writer thread.
    pub(crate) fn open(
        path: &Path,
        migrate: impl FnOnce(&mut Connection) -> Result<(), StoreError>,
    ) -> Result<Db, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        configure(&conn)?;
        migrate(&mut conn)?;
        let (writer, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("central-writer".into())
            .spawn(move || write_loop(conn, rx))?;
        Ok(Db {
            writer,
            readers: Arc::new(Readers {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` in the next batch's transaction; its result is returned
    /// once the batch is durable. An error undoes `f`'s writes only.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let op: WriteOp = Box::new(Pending { f, reply });
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection (a consistent snapshot for its duration).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = f(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

impl Readers {
    fn take(&self) -> Result<Connection, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < READERS
        {
            idle.push(conn);
        }
    }
}

fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<WriteOp>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch);
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<WriteOp>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "store: cannot begin a transaction");
            for op in batch {
                op.fail(StoreError::Unavailable(e.to_string()));
            }
            return;
        }
    };
    let mut finishes = Vec::with_capacity(batch.len());
    for op in batch {
        let savepoint = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                op.fail(StoreError::from(e));
                continue;
            }
        };
        // A savepoint dropped uncommitted (the write failed) rolls back.
        if let Some(finish) = op.run(&savepoint) {
            match savepoint.commit() {
                Ok(()) => finishes.push(finish),
                Err(e) => finish(Err(StoreError::from(e))),
            }
        }
    }
    let committed = tx.commit().map_err(|e| e.to_string());
    if let Err(e) = &committed {
        tracing::error!(error = %e, "store: batch commit failed; nothing in it is acknowledged");
    }
    for finish in finishes {
        finish(committed.clone().map_err(StoreError::Unavailable));
    }
}
