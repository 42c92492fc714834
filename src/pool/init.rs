//! The pool's initializer and its arguments, which may carry shmproc handles.
//!
//! The arguments are encoded once, when the pool is built, like a task's. Handles inside
//! them encode as tokens naming fds, so the encoding is made inside the spawn helper's fd
//! collection, and the argument value itself is kept alive for the pool's life to keep
//! those fds open. Each worker then gets them:
//! - **Fork**: the worker is a copy of the pool's process; the fds are simply inherited.
//! - **Spawn**: `Init` is part of the worker's arguments; serializing it passes the fds to
//!   the child, and decoding it there claims the inherited originals, so that they stay
//!   open until the initializer has decoded its handles from them.
//! - **Threads**: the fds are this process's own.
//!
//! In every case the initializer's handles are decoded from the tokens while exactly the
//! fds the parent named are allowed ([`transfer::with_inherited`]), and each handle owns a
//! duplicate of its fd.

use std::any::Any;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::task;
use crate::error::PoolError;
use crate::shm::transfer;

/// An initializer: its trampoline, its encoded argument, and the fds its handles name.
#[derive(Clone)]
pub(crate) struct Init {
    offset: u64,
    payload: Arc<Vec<u8>>,
    fds: Vec<RawFd>,
    /// In the pool's process: the argument value, which owns `fds`.
    _keep: Option<Arc<dyn Any + Send + Sync>>,
    /// In a spawned worker: the inherited originals of `fds`, until the initializer ran.
    owned: Option<Arc<Mutex<Vec<OwnedFd>>>>,
}

impl Init {
    /// Encodes `args` for the initializer at `offset`.
    pub(crate) fn new<A>(offset: u64, args: A) -> Result<Self, PoolError>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let (encoded, fds, started) =
            transfer::collect_fds(|| postcard::to_allocvec(std::slice::from_ref(&args)));
        if !started.is_empty() {
            return Err(PoolError::Codec(
                "a pipe end cannot be an initializer argument (every worker would hold the same end)"
                    .to_owned(),
            ));
        }
        let payload = encoded
            .map_err(|e| PoolError::Codec(format!("cannot encode the initializer's arguments: {e}")))?;
        Ok(Self {
            offset,
            payload: Arc::new(payload),
            fds,
            _keep: Some(Arc::new(Mutex::new(args))),
            owned: None,
        })
    }

    /// Runs the initializer here, writing its `INIT` reply into `out`.
    pub(crate) fn run(&self, out: &mut Vec<u8>) {
        transfer::with_inherited(&self.fds, || {
            task::run_chunk(self.offset, &self.payload, task::INIT, out)
        });
        if let Some(owned) = &self.owned {
            // The handles decoded above own duplicates: the originals are no longer needed.
            if let Ok(mut v) = owned.lock() {
                v.clear();
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    offset: u64,
    payload: Vec<u8>,
    fds: Vec<RawFd>,
}

impl Serialize for Init {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        for &fd in &self.fds {
            if !transfer::pass_fd(fd) {
                return Err(serde::ser::Error::custom(
                    "an initializer with handles can only be sent to a spawned worker",
                ));
            }
        }
        Wire {
            offset: self.offset,
            payload: self.payload.to_vec(),
            fds: self.fds.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Init {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let mut owned = Vec::with_capacity(w.fds.len());
        for &fd in &w.fds {
            match transfer::claim_fd(fd) {
                Some(o) => owned.push(o),
                None => {
                    return Err(transfer::fail(format!(
                        "the initializer's arguments name fd {fd}, which was not passed"
                    )))
                }
            }
        }
        Ok(Self {
            offset: w.offset,
            payload: Arc::new(w.payload),
            fds: w.fds,
            _keep: None,
            owned: Some(Arc::new(Mutex::new(owned))),
        })
    }
}
