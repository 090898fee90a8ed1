//! The inference worker: one thread owns the model and takes work from a bounded queue,
//! gathering waiting requests into batches under a token budget (dynamic batching, as in
//! text-embeddings-inference). A full queue is refused at once, which the API turns into 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Instant;

use tokio::sync::oneshot;

use super::tokenize::Tokens;
use super::{EmbedError, Encoder};
use crate::analytics::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Most tokens (padded) in one forward pass.
    pub max_batch_tokens: usize,
    /// Most sequences in one forward pass.
    pub max_batch_size: usize,
    /// Most requests waiting for the worker; more are refused as overload.
    pub max_queue: usize,
}

/// What the worker sends back for one request: its vectors, in order.
pub type BatchResult = Result<Vec<Vec<f32>>, EmbedError>;

type Reply = oneshot::Sender<BatchResult>;

struct Job {
    tokens: Vec<Tokens>,
    reply: Reply,
    enqueued: Instant,
}

pub struct Batcher {
    tx: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Batcher {
    pub fn spawn(encoder: Box<dyn Encoder>, cfg: BatcherConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = sync_channel(cfg.max_queue.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            encoder,
            rx,
            cfg: cfg.clone(),
            metrics,
            queued: queued.clone(),
        };
        std::thread::Builder::new()
            .name("kefu-embed".into())
            .spawn(move || worker.run())
            .expect("spawning the embedding worker");
        Self {
            tx,
            queued,
            max_queue: cfg.max_queue,
        }
    }

    /// Queues `tokens`; the receiver yields their vectors in order.
    pub fn submit(
        &self,
        tokens: Vec<Tokens>,
    ) -> Result<oneshot::Receiver<BatchResult>, EmbedError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tokens,
            reply,
            enqueued: Instant::now(),
        };
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(EmbedError::Overloaded(self.max_queue))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(EmbedError::WorkerGone)
            }
        }
    }

    /// Requests accepted and not yet taken by the worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

struct Worker {
    encoder: Box<dyn Encoder>,
    rx: Receiver<Job>,
    cfg: BatcherConfig,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
}

impl Worker {
    fn run(mut self) {
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(j) => j,
                None => match self.rx.recv() {
                    Ok(j) => j,
                    Err(_) => return, // every sender dropped: the model was unloaded
                },
            };
            self.took(&first);
            let mut budget = job_tokens(&first);
            let mut jobs = vec![first];
            // Gather whatever else is already waiting, within the token budget.
            while budget < self.cfg.max_batch_tokens {
                match self.rx.try_recv() {
                    Ok(j) => {
                        self.took(&j);
                        let t = job_tokens(&j);
                        if budget + t > self.cfg.max_batch_tokens {
                            carry = Some(j);
                            break;
                        }
                        budget += t;
                        jobs.push(j);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.run_jobs(jobs);
        }
    }

    fn took(&self, job: &Job) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.metrics
            .queue_seconds
            .observe(job.enqueued.elapsed().as_secs_f64());
    }

    fn run_jobs(&mut self, jobs: Vec<Job>) {
        // Every sequence of every job, sorted by length so that each forward pass pads little.
        let mut items: Vec<(usize, usize, &[u32])> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            for (i, t) in job.tokens.iter().enumerate() {
                items.push((j, i, &t.ids));
            }
        }
        items.sort_by_key(|(_, _, ids)| ids.len());
        let mut results: Vec<Vec<Option<Vec<f32>>>> =
            jobs.iter().map(|j| vec![None; j.tokens.len()]).collect();
        let mut failed: Option<EmbedError> = None;
        let mut start = 0;
        while start < items.len() {
            // Longest prefix whose padded size fits the budget (at least one sequence).
            let mut end = start + 1;
            while end < items.len()
                && end - start < self.cfg.max_batch_size
                && (end - start + 1) * items[end].2.len() <= self.cfg.max_batch_tokens
            {
                end += 1;
            }
            let batch: Vec<&[u32]> = items[start..end].iter().map(|x| x.2).collect();
            let started = Instant::now();
            let out = self.encoder.embed(&batch);
            self.metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_size.observe(batch.len() as f64);
            self.metrics
                .batch_tokens
                .observe((batch.len() * batch.last().map_or(0, |b| b.len())) as f64);
            match out {
                Ok(vectors) => {
                    for ((j, i, _), v) in items[start..end].iter().zip(vectors) {
                        results[*j][*i] = Some(v);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedding batch failed");
                    failed = Some(e);
                    break;
                }
            }
            start = end;
        }
        for (job, res) in jobs.into_iter().zip(results) {
            let reply = match &failed {
                Some(e) => Err(e.clone()),
                None => Ok(res
                    .into_iter()
                    .map(|v| v.expect("every item embedded"))
                    .collect()),
            };
            // The requester may have gone away (timeout, client hung up): nothing to do.
            let _ = job.reply.send(reply);
        }
    }
}

fn job_tokens(job: &Job) -> usize {
    job.tokens.iter().map(|t| t.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A fake encoder that records batch shapes and returns each sequence's length as vector.
    struct Recorder(Arc<Mutex<Vec<Vec<usize>>>>, std::time::Duration);

    impl Encoder for Recorder {
        fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
            std::thread::sleep(self.1);
            self.0
                .lock()
                .unwrap()
                .push(batch.iter().map(|b| b.len()).collect());
            Ok(batch.iter().map(|b| vec![b.len() as f32]).collect())
        }
    }

    fn toks(n: usize) -> Tokens {
        Tokens { ids: vec![7; n] }
    }

    #[test]
    fn results_keep_request_order_and_batches_respect_budget() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::spawn(
            Box::new(Recorder(log.clone(), std::time::Duration::ZERO)),
            BatcherConfig {
                max_batch_tokens: 20,
                max_batch_size: 3,
                max_queue: 8,
            },
            Arc::new(Metrics::new()),
        );
        let rx = b
            .submit(vec![toks(9), toks(2), toks(5), toks(2), toks(3)])
            .unwrap();
        let out = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(out, vec![vec![9.], vec![2.], vec![5.], vec![2.], vec![3.]]);
        for batch in log.lock().unwrap().iter() {
            assert!(batch.len() <= 3);
            assert!(batch.len() * batch.iter().max().unwrap() <= 20, "{batch:?}");
            assert!(
                batch.windows(2).all(|w| w[0] <= w[1]),
                "sorted by length: {batch:?}"
            );
        }
    }

    #[test]
    fn full_queue_is_refused() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::spawn(
            Box::new(Recorder(log, std::time::Duration::from_millis(200))),
            BatcherConfig {
                max_batch_tokens: 4,
                max_batch_size: 1,
                max_queue: 1,
            },
            Arc::new(Metrics::new()),
        );
        let mut refused = 0;
        let mut accepted = Vec::new();
        for _ in 0..6 {
            match b.submit(vec![toks(4)]) {
                Ok(rx) => accepted.push(rx),
                Err(EmbedError::Overloaded(1)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused >= 3, "refused {refused}");
        for rx in accepted {
            assert_eq!(rx.blocking_recv().unwrap().unwrap(), vec![vec![4.]]);
        }
    }
}
