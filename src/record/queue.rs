//! The durable upload queue: every object to record (and every deletion of a recorded object
//! after a failed delivery) is written here first, in its own redb file, and removed only once
//! the MSS confirmed it (IMAP tagged `OK`). A node restarted with jobs in the file takes them
//! up again, so an upload is not lost when the MSS or the node is down.
//!
//! Synchronous (redb commits wait for the disk): the uploader calls it from a blocking task.

use std::path::Path;

use ::redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use bytes::Bytes;
use thiserror::Error;

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT: &str = "next_id";

/// A queue fault.
#[derive(Debug, Error)]
pub enum QueueError {
    /// The file could not be used.
    #[error("record queue: {0}")]
    Redb(#[from] ::redb::Error),
    /// The queue holds its maximum.
    #[error("record queue full ({0} jobs)")]
    Full(usize),
}

fn e<E: Into<::redb::Error>>(x: E) -> QueueError {
    QueueError::Redb(x.into())
}

/// What the uploader does with the MSS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// APPEND `object` to `folder` of `account` (creating the folder).
    Append {
        /// IMAP account.
        account: String,
        /// Folder (from the Conversation-ID).
        folder: String,
        /// The object's RFC 5322 Message-ID (without `<>`).
        object_id: String,
        /// The RFC 5322 object.
        object: Bytes,
    },
    /// Delete the object with this Message-ID from `folder` of `account`.
    Delete {
        /// IMAP account.
        account: String,
        /// Folder.
        folder: String,
        /// The object's RFC 5322 Message-ID (without `<>`).
        object_id: String,
    },
}

impl Job {
    /// The account the job is for.
    pub fn account(&self) -> &str {
        match self {
            Job::Append { account, .. } | Job::Delete { account, .. } => account,
        }
    }

    /// The object it is about.
    pub fn object_id(&self) -> &str {
        match self {
            Job::Append { object_id, .. } | Job::Delete { object_id, .. } => object_id,
        }
    }

    /// The stored form: a tag byte, then length-prefixed (u32 big-endian) fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let field = |f: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(f);
        };
        match self {
            Job::Append {
                account,
                folder,
                object_id,
                object,
            } => {
                out.push(b'A');
                for f in [
                    account.as_bytes(),
                    folder.as_bytes(),
                    object_id.as_bytes(),
                    object,
                ] {
                    field(f, &mut out);
                }
            }
            Job::Delete {
                account,
                folder,
                object_id,
            } => {
                out.push(b'D');
                for f in [account.as_bytes(), folder.as_bytes(), object_id.as_bytes()] {
                    field(f, &mut out);
                }
            }
        }
        out
    }

    /// The account of a stored job and, for an upload, its object id, without copying the
    /// object.
    pub fn peek(v: &[u8]) -> Option<(String, Option<String>)> {
        let (&tag, mut rest) = v.split_first()?;
        let mut fields = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            fields.push(String::from_utf8(rest.get(4..4 + len)?.to_vec()).ok()?);
            rest = rest.get(4 + len..)?;
        }
        let object_id = fields.pop()?;
        fields.pop()?;
        let account = fields.pop()?;
        Some((account, (tag == b'A').then_some(object_id)))
    }

    /// The job of a stored value; `None` when the value is not one.
    pub fn decode(v: &[u8]) -> Option<Job> {
        let (&tag, mut rest) = v.split_first()?;
        let mut field = || -> Option<&[u8]> {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let f = rest.get(4..4 + len)?;
            rest = rest.get(4 + len..)?;
            Some(f)
        };
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
        let account = text(field()?)?;
        let folder = text(field()?)?;
        let object_id = text(field()?)?;
        match tag {
            b'A' => {
                let object = Bytes::copy_from_slice(field()?);
                Some(Job::Append {
                    account,
                    folder,
                    object_id,
                    object,
                })
            }
            b'D' => Some(Job::Delete {
                account,
                folder,
                object_id,
            }),
            _ => None,
        }
    }
}

/// What [`Job::peek`] reads of a stored job: its account, and its object id when it is an
/// upload.
pub type Peeked = (String, Option<String>);

/// The queue file.
pub struct Queue {
    db: Database,
    capacity: usize,
}

impl Queue {
    /// Open (or create) the queue at `path`, holding at most `capacity` jobs.
    pub fn open(path: &Path, capacity: usize) -> Result<Queue, QueueError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Database::create(path).map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        {
            txn.open_table(JOBS).map_err(e)?;
            txn.open_table(META).map_err(e)?;
        }
        txn.commit().map_err(e)?;
        Ok(Queue { db, capacity })
    }

    /// Store a job durably; its id.
    pub fn push(&self, job: &Job) -> Result<u64, QueueError> {
        let txn = self.db.begin_write().map_err(e)?;
        let id = {
            let mut jobs = txn.open_table(JOBS).map_err(e)?;
            if jobs.len().map_err(e)? >= self.capacity as u64 {
                return Err(QueueError::Full(self.capacity));
            }
            let mut meta = txn.open_table(META).map_err(e)?;
            let id = meta.get(NEXT).map_err(e)?.map_or(1, |g| g.value());
            meta.insert(NEXT, id + 1).map_err(e)?;
            jobs.insert(id, job.encode().as_slice()).map_err(e)?;
            id
        };
        txn.commit().map_err(e)?;
        Ok(id)
    }

    /// Remove a job (done, or no longer wanted); whether it was there.
    pub fn remove(&self, id: u64) -> Result<bool, QueueError> {
        let txn = self.db.begin_write().map_err(e)?;
        let was = {
            let mut jobs = txn.open_table(JOBS).map_err(e)?;
            jobs.remove(id).map_err(e)?.is_some()
        };
        txn.commit().map_err(e)?;
        Ok(was)
    }

    /// The job `id`, if still queued.
    pub fn get(&self, id: u64) -> Result<Option<Job>, QueueError> {
        let txn = self.db.begin_read().map_err(e)?;
        let jobs = txn.open_table(JOBS).map_err(e)?;
        Ok(jobs
            .get(id)
            .map_err(e)?
            .and_then(|g| Job::decode(g.value())))
    }

    /// Up to `limit` queued jobs in the order they were queued (an undecodable value is
    /// skipped and reported as `None`, so the caller can remove it).
    pub fn list(&self, limit: usize) -> Result<Vec<(u64, Option<Job>)>, QueueError> {
        let txn = self.db.begin_read().map_err(e)?;
        let jobs = txn.open_table(JOBS).map_err(e)?;
        let mut out = Vec::new();
        for item in jobs.iter().map_err(e)?.take(limit) {
            let (k, v) = item.map_err(e)?;
            out.push((k.value(), Job::decode(v.value())));
        }
        Ok(out)
    }

    /// Up to `limit` queued jobs as (id, what [`Job::peek`] reads: `None` when undecodable),
    /// in queue order, without reading the objects: what the uploader indexes at start.
    pub fn index(&self, limit: usize) -> Result<Vec<(u64, Option<Peeked>)>, QueueError> {
        let txn = self.db.begin_read().map_err(e)?;
        let jobs = txn.open_table(JOBS).map_err(e)?;
        let mut out = Vec::new();
        for item in jobs.iter().map_err(e)?.take(limit) {
            let (k, v) = item.map_err(e)?;
            out.push((k.value(), Job::peek(v.value())));
        }
        Ok(out)
    }

    /// Jobs queued.
    pub fn len(&self) -> Result<u64, QueueError> {
        let txn = self.db.begin_read().map_err(e)?;
        let jobs = txn.open_table(JOBS).map_err(e)?;
        jobs.len().map_err(e)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(n: u8) -> Job {
        Job::Append {
            account: "alice@cpm.example.net".into(),
            folder: "conv-1".into(),
            object_id: format!("o{n}@cpm-iwf"),
            object: Bytes::from(vec![n; 300]),
        }
    }

    #[test]
    fn jobs_round_trip_and_garbage_is_refused() {
        let d = Job::Delete {
            account: "a".into(),
            folder: "f".into(),
            object_id: "o".into(),
        };
        for j in [append(7), d] {
            assert_eq!(Job::decode(&j.encode()), Some(j));
        }
        let enc = append(1).encode();
        for cut in 0..enc.len() {
            assert_eq!(Job::decode(&enc[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Job::decode(b"X\0\0\0\0\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn the_queue_survives_a_reopen_and_keeps_order() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("q.redb");
        let ids = {
            let q = Queue::open(&path, 10).expect("open");
            let ids: Vec<u64> = (0..3).map(|n| q.push(&append(n)).expect("push")).collect();
            assert!(q.remove(ids[1]).expect("remove"));
            assert!(!q.remove(ids[1]).expect("again"));
            ids
        };
        let q = Queue::open(&path, 10).expect("reopen");
        let list = q.list(10).expect("list");
        assert_eq!(
            list,
            vec![(ids[0], Some(append(0))), (ids[2], Some(append(2)))]
        );
        assert_eq!(q.get(ids[2]).expect("get"), Some(append(2)));
        let who = |o: &str| Some(("alice@cpm.example.net".to_string(), Some(o.to_string())));
        assert_eq!(
            q.index(10).expect("index"),
            vec![(ids[0], who("o0@cpm-iwf")), (ids[2], who("o2@cpm-iwf"))]
        );
        let d = Job::Delete {
            account: "a".into(),
            folder: "f".into(),
            object_id: "o".into(),
        };
        assert_eq!(Job::peek(&d.encode()), Some(("a".to_string(), None)));
        assert_eq!(Job::peek(b"A\0\0"), None);
        assert_eq!(q.len().expect("len"), 2);
        // Ids are never reused after a restart.
        assert!(q.push(&append(9)).expect("push") > ids[2]);
    }

    #[test]
    fn a_full_queue_refuses() {
        let dir = tempfile::tempdir().expect("dir");
        let q = Queue::open(&dir.path().join("q.redb"), 2).expect("open");
        q.push(&append(0)).expect("1");
        q.push(&append(1)).expect("2");
        assert!(matches!(q.push(&append(2)), Err(QueueError::Full(2))));
        assert_eq!(q.len().expect("len"), 2);
    }
}
