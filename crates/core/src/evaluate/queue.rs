//! The queues between the planner, the workers and the delivery (docs/ARCHITECTURE.md §12).
//!
//! [`WorkQueue`] is the sending side, the only side the core needs: on AWS the receiving side is
//! Lambda's SQS event source mapping, which calls the worker and delivery functions with batches
//! and retries what they report as failed. [`InProcessQueue`] is both sides over a tokio channel,
//! for `sluice local run`, the demo and [`super::Evaluator`]: workers pull from it until it is
//! closed and empty.

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is closed")]
    Closed,
    #[error("sending to the queue failed: {0}")]
    Send(String),
}

/// Where work is sent.
#[async_trait]
pub trait WorkQueue<T: Send + 'static>: Send + Sync {
    /// Queues every item (a queue may send them in batches).
    async fn send_all(&self, items: Vec<T>) -> Result<(), QueueError>;
}

/// A queue in this process: an unbounded tokio channel whose receiving end any number of
/// workers share.
#[derive(Debug)]
pub struct InProcessQueue<T> {
    sender: std::sync::Mutex<Option<mpsc::UnboundedSender<T>>>,
    receiver: Mutex<mpsc::UnboundedReceiver<T>>,
}

impl<T: Send + 'static> Default for InProcessQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> InProcessQueue<T> {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            sender: std::sync::Mutex::new(Some(tx)),
            receiver: Mutex::new(rx),
        }
    }

    /// No more sends: receivers get what is queued, then `None`.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
    }

    /// The next item, or `None` once the queue is closed and empty.
    pub async fn recv(&self) -> Option<T> {
        self.receiver.lock().await.recv().await
    }
}

#[async_trait]
impl<T: Send + 'static> WorkQueue<T> for InProcessQueue<T> {
    async fn send_all(&self, items: Vec<T>) -> Result<(), QueueError> {
        let sender = self
            .sender
            .lock()
            .map_err(|_| QueueError::Closed)?
            .clone()
            .ok_or(QueueError::Closed)?;
        for item in items {
            sender.send(item).map_err(|_| QueueError::Closed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receivers_drain_what_was_queued_then_see_the_end() {
        let q = InProcessQueue::new();
        q.send_all(vec![1, 2, 3]).await.expect("open");
        q.close();
        assert_eq!(q.send_all(vec![4]).await, Err(QueueError::Closed));
        let mut got = Vec::new();
        while let Some(i) = q.recv().await {
            got.push(i);
        }
        assert_eq!(got, [1, 2, 3]);
    }
}
