//! The inference worker: one thread owns the model and takes requests from a bounded queue.
//! Requests are served in rounds: each round takes sequences from every waiting request in
//! turn (round-robin, shortest first), up to a token budget, so a short query that arrives
//! behind a request of hundreds of long texts goes into the next round instead of waiting for
//! all of them; the round's sequences are then sorted by length and run in forward passes
//! that pad little (dynamic batching, as in text-embeddings-inference). A request nobody
//! waits for any more (the client hung up, the request timed out) is dropped before the next
//! round. Too many unanswered requests are refused at once, which the API turns into 429.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use tokio::sync::oneshot;

use super::tokenize::Tokens;
use super::{EmbedError, Encoder};
use crate::analytics::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Most tokens in one round (real tokens) and in one forward pass (padded).
    pub max_batch_tokens: usize,
    /// Most sequences in one round and in one forward pass.
    pub max_batch_size: usize,
    /// Most requests accepted and not yet answered; more are refused as overload.
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
    pending: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Batcher {
    pub fn spawn(encoder: Box<dyn Encoder>, cfg: BatcherConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = sync_channel(cfg.max_queue.max(1));
        let pending = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            encoder,
            rx,
            cfg: cfg.clone(),
            metrics,
            pending: pending.clone(),
        };
        std::thread::Builder::new()
            .name("kefu-embed".into())
            .spawn(move || worker.run())
            .expect("spawning the embedding worker");
        Self {
            tx,
            pending,
            max_queue: cfg.max_queue,
        }
    }

    /// Queues `tokens`; the receiver yields their vectors in order. Dropping the receiver
    /// withdraws the request: the worker encodes no more of it.
    pub fn submit(
        &self,
        tokens: Vec<Tokens>,
    ) -> Result<oneshot::Receiver<BatchResult>, EmbedError> {
        if self.pending.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(EmbedError::Overloaded(self.max_queue));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tokens,
            reply,
            enqueued: Instant::now(),
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            // Not reached while `pending` bounds the queue; refused the same way if it were.
            Err(TrySendError::Full(_)) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                Err(EmbedError::Overloaded(self.max_queue))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                Err(EmbedError::WorkerGone)
            }
        }
    }

    /// Requests accepted and not yet answered (waiting or being encoded).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// A request the worker has taken: what is left of it and what is done.
struct Request {
    tokens: Vec<Tokens>,
    /// Indices of the sequences not yet given to a round, longest first (`pop` gives the
    /// shortest).
    todo: Vec<usize>,
    vectors: Vec<Option<Vec<f32>>>,
    failed: Option<EmbedError>,
    reply: Reply,
    enqueued: Instant,
    started: bool,
}

impl Request {
    fn new(job: Job) -> Self {
        let mut todo: Vec<usize> = (0..job.tokens.len()).collect();
        todo.sort_by_key(|&i| std::cmp::Reverse(job.tokens[i].len()));
        Self {
            vectors: vec![None; job.tokens.len()],
            tokens: job.tokens,
            todo,
            failed: None,
            reply: job.reply,
            enqueued: job.enqueued,
            started: false,
        }
    }

    /// Lengths of the sequences not yet given to a round, shortest first.
    fn todo_lens(&self) -> Vec<usize> {
        self.todo
            .iter()
            .rev()
            .map(|&i| self.tokens[i].len())
            .collect()
    }

    fn done(&self) -> bool {
        self.failed.is_some() || (self.todo.is_empty() && self.vectors.iter().all(Option::is_some))
    }

    fn answer(self) {
        let reply = match self.failed {
            Some(e) => Err(e),
            None => Ok(self
                .vectors
                .into_iter()
                .map(|v| v.expect("every sequence encoded"))
                .collect()),
        };
        // The requester may have gone away just now: nothing to do.
        let _ = self.reply.send(reply);
    }
}

struct Worker {
    encoder: Box<dyn Encoder>,
    rx: Receiver<Job>,
    cfg: BatcherConfig,
    metrics: Arc<Metrics>,
    pending: Arc<AtomicUsize>,
}

impl Worker {
    fn run(mut self) {
        let mut active: VecDeque<Request> = VecDeque::new();
        loop {
            if active.is_empty() {
                match self.rx.recv() {
                    Ok(j) => active.push_back(Request::new(j)),
                    Err(_) => return, // every sender dropped: the model was unloaded
                }
            }
            // Everything else already waiting joins the rotation.
            while let Ok(j) = self.rx.try_recv() {
                active.push_back(Request::new(j));
            }
            self.drop_abandoned(&mut active);
            if !active.is_empty() {
                self.run_round(&mut active);
            }
        }
    }

    /// Requests whose receiver is gone (timed out, client hung up) leave without more work.
    fn drop_abandoned(&self, active: &mut VecDeque<Request>) {
        active.retain(|r| {
            if !r.reply.is_closed() {
                return true;
            }
            self.metrics.embed_cancelled.inc();
            self.metrics
                .embed_cancelled_sequences
                .inc_by(r.todo.len() as u64);
            self.pending.fetch_sub(1, Ordering::SeqCst);
            false
        });
    }

    /// One round: sequences taken from the requests in turn, encoded in length-sorted passes;
    /// finished requests are answered and leave, the next round starts after the last request
    /// served in this one.
    fn run_round(&mut self, active: &mut VecDeque<Request>) {
        let lens: Vec<Vec<usize>> = active.iter().map(Request::todo_lens).collect();
        let (takes, next) = plan_round(&lens, self.cfg.max_batch_tokens, self.cfg.max_batch_size);
        // (request, sequence, length) of every sequence in the round.
        let mut items: Vec<(usize, usize, usize)> = Vec::new();
        for (r, (req, &take)) in active.iter_mut().zip(&takes).enumerate() {
            if take > 0 && !req.started {
                req.started = true;
                self.metrics
                    .queue_seconds
                    .observe(req.enqueued.elapsed().as_secs_f64());
            }
            for _ in 0..take {
                let i = req.todo.pop().expect("planned from todo");
                items.push((r, i, req.tokens[i].len()));
            }
        }
        items.sort_by_key(|x| x.2);
        let lens: Vec<usize> = items.iter().map(|x| x.2).collect();
        for pass in split_passes(&lens, self.cfg.max_batch_tokens, self.cfg.max_batch_size) {
            let items = &items[pass];
            let batch: Vec<&[u32]> = items
                .iter()
                .map(|&(r, i, _)| active[r].tokens[i].ids.as_slice())
                .collect();
            let started = Instant::now();
            let out = self.encoder.embed(&batch);
            self.metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_size.observe(batch.len() as f64);
            self.metrics
                .batch_tokens
                .observe((batch.len() * batch.last().map_or(0, |b| b.len())) as f64);
            self.metrics.embed_sequences.inc_by(batch.len() as u64);
            match out {
                Ok(vectors) => {
                    for (&(r, i, _), v) in items.iter().zip(vectors) {
                        active[r].vectors[i] = Some(v);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedding batch failed");
                    for &(r, _, _) in items {
                        active[r].failed = Some(e.clone());
                    }
                }
            }
        }
        active.rotate_left(next);
        let mut i = 0;
        while i < active.len() {
            if active[i].done() {
                let req = active.remove(i).expect("index in range");
                self.pending.fetch_sub(1, Ordering::SeqCst);
                req.answer();
            } else {
                i += 1;
            }
        }
    }
}

/// Plans one round over the requests in rotation order, given each one's remaining sequence
/// lengths (shortest first): requests take turns giving their shortest remaining sequence
/// until the round holds `max_seqs` sequences or no request's next sequence fits in what is
/// left of `max_tokens` (real tokens; a request whose next sequence does not fit gives no
/// more this round, the others go on). The round's first sequence is always taken, however
/// long. Returns how many sequences each request gives, and the position the next round's
/// rotation starts from (the request after the last one served).
fn plan_round(lens: &[Vec<usize>], max_tokens: usize, max_seqs: usize) -> (Vec<usize>, usize) {
    let n = lens.len();
    let mut takes = vec![0; n];
    let mut blocked = vec![false; n];
    let (mut seqs, mut tokens, mut next) = (0, 0, 0);
    'turns: loop {
        let mut served = false;
        for r in 0..n {
            if seqs == max_seqs {
                break 'turns;
            }
            if blocked[r] {
                continue;
            }
            let Some(&len) = lens[r].get(takes[r]) else {
                blocked[r] = true;
                continue;
            };
            if seqs > 0 && tokens + len > max_tokens {
                blocked[r] = true;
                continue;
            }
            takes[r] += 1;
            seqs += 1;
            tokens += len;
            served = true;
            next = (r + 1) % n;
        }
        if !served {
            break;
        }
    }
    (takes, next)
}

/// Cuts a round's sequence lengths (sorted, shortest first) into forward passes: each pass is
/// the longest run that stays within `max_seqs` sequences and `max_tokens` padded tokens, and
/// whose padding at most doubles its real tokens (a short query is not padded to the length
/// of long texts beside it). Every pass holds at least one sequence.
fn split_passes(lens: &[usize], max_tokens: usize, max_seqs: usize) -> Vec<Range<usize>> {
    let mut passes = Vec::new();
    let mut start = 0;
    while start < lens.len() {
        let mut end = start + 1;
        let mut real = lens[start];
        while end < lens.len() {
            let (n, len) = (end - start + 1, lens[end]);
            if n > max_seqs || n * len > max_tokens || n * len > 2 * (real + len) {
                break;
            }
            real += len;
            end += 1;
        }
        passes.push(start..end);
        start = end;
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};
    use std::time::Duration;

    /// A fake encoder that records batch shapes and returns each sequence's length as vector.
    /// With a gate, its first pass tells the test it started and waits until the test opens it.
    struct Recorder {
        log: Arc<Mutex<Vec<Vec<usize>>>>,
        delay: Duration,
        gate: Option<(Sender<()>, Receiver<()>)>,
    }

    impl Recorder {
        fn new(log: &Arc<Mutex<Vec<Vec<usize>>>>, delay: Duration) -> Self {
            Self {
                log: log.clone(),
                delay,
                gate: None,
            }
        }
    }

    impl Encoder for Recorder {
        fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
            if let Some((started, open)) = self.gate.take() {
                started.send(()).unwrap();
                open.recv().unwrap();
            }
            std::thread::sleep(self.delay);
            self.log
                .lock()
                .unwrap()
                .push(batch.iter().map(|b| b.len()).collect());
            Ok(batch.iter().map(|b| vec![b.len() as f32]).collect())
        }
    }

    fn toks(n: usize) -> Tokens {
        Tokens { ids: vec![7; n] }
    }

    type Log = Arc<Mutex<Vec<Vec<usize>>>>;

    /// A batcher whose first forward pass waits: returns it, the log, the signal that the pass
    /// started and the sender that lets it go on.
    fn gated(
        cfg: BatcherConfig,
        metrics: &Arc<Metrics>,
    ) -> (Batcher, Log, Receiver<()>, Sender<()>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started_rx) = channel();
        let (open_tx, open_rx) = channel();
        let mut enc = Recorder::new(&log, Duration::ZERO);
        enc.gate = Some((started_tx, open_rx));
        let b = Batcher::spawn(Box::new(enc), cfg, metrics.clone());
        (b, log, started_rx, open_tx)
    }

    #[test]
    fn results_keep_request_order_and_batches_respect_budget() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::spawn(
            Box::new(Recorder::new(&log, Duration::ZERO)),
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
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn full_queue_is_refused() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::spawn(
            Box::new(Recorder::new(&log, Duration::from_millis(200))),
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

    #[test]
    fn a_short_request_behind_a_huge_one_goes_into_the_next_round() {
        let metrics = Arc::new(Metrics::new());
        let (b, log, started, open) = gated(
            BatcherConfig {
                max_batch_tokens: 32,
                max_batch_size: 64,
                max_queue: 8,
            },
            &metrics,
        );
        // 40 texts of 16 tokens: two per round, twenty rounds.
        let big = b.submit((0..40).map(|_| toks(16)).collect()).unwrap();
        started.recv().unwrap();
        let small = b.submit(vec![toks(3)]).unwrap();
        open.send(()).unwrap();
        assert_eq!(small.blocking_recv().unwrap().unwrap(), vec![vec![3.]]);
        assert_eq!(big.blocking_recv().unwrap().unwrap().len(), 40);
        let log = log.lock().unwrap();
        let at = log.iter().position(|p| p.contains(&3)).unwrap();
        assert_eq!(at, 1, "the short request is in the second pass: {log:?}");
        assert_eq!(log.len(), 21, "{log:?}");
        assert_eq!(metrics.embed_sequences.get(), 41);
        assert_eq!(metrics.embed_cancelled.get(), 0);
    }

    #[test]
    fn an_abandoned_request_stops_using_the_model() {
        let metrics = Arc::new(Metrics::new());
        let (b, log, started, open) = gated(
            BatcherConfig {
                max_batch_tokens: 32,
                max_batch_size: 64,
                max_queue: 8,
            },
            &metrics,
        );
        let big = b.submit((0..40).map(|_| toks(16)).collect()).unwrap();
        started.recv().unwrap();
        // The requester goes away while its first round is encoded.
        drop(big);
        open.send(()).unwrap();
        let after = b.submit(vec![toks(3)]).unwrap();
        assert_eq!(after.blocking_recv().unwrap().unwrap(), vec![vec![3.]]);
        let log = log.lock().unwrap();
        assert_eq!(*log, vec![vec![16, 16], vec![3]]);
        assert_eq!(metrics.embed_cancelled.get(), 1);
        assert_eq!(metrics.embed_cancelled_sequences.get(), 38);
        assert_eq!(metrics.embed_sequences.get(), 3);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn rounds_take_requests_in_turn_within_the_budget() {
        // A huge request first, a short one after: the short one is in the first round.
        let huge = vec![512; 200];
        let (takes, next) = plan_round(&[huge.clone(), vec![10]], 16384, 64);
        assert_eq!(takes, vec![31, 1], "31 × 512 + 10 tokens");
        assert_eq!(next, 1);
        // Turns alternate while both have sequences left; the sequence count caps the round.
        let (takes, next) = plan_round(&[vec![5; 10], vec![5; 10], vec![5; 10]], 10_000, 7);
        assert_eq!(takes, vec![3, 2, 2]);
        assert_eq!(next, 1, "the next round starts with the second request");
        // A request whose next sequence does not fit gives no more; the others go on.
        let (takes, _) = plan_round(&[vec![100, 100], vec![10; 5]], 215, 64);
        assert_eq!(takes, vec![2, 1]);
        let (takes, _) = plan_round(&[vec![100, 300], vec![10; 5]], 215, 64);
        assert_eq!(takes, vec![1, 5]);
        // The first sequence is taken however long; nothing else then fits.
        let (takes, _) = plan_round(&[vec![600], vec![10]], 512, 64);
        assert_eq!(takes, vec![1, 0]);
        // More requests than one round holds: each is served before any is served twice.
        let lens = vec![vec![4; 3]; 10];
        let (takes, next) = plan_round(&lens, 10_000, 6);
        assert_eq!(takes, vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(next, 6);
    }

    #[test]
    fn rotation_serves_every_request_in_turn() {
        let metrics = Arc::new(Metrics::new());
        let (b, log, started, open) = gated(
            BatcherConfig {
                max_batch_tokens: 1000,
                max_batch_size: 2,
                max_queue: 8,
            },
            &metrics,
        );
        let first = b.submit(vec![toks(1)]).unwrap();
        started.recv().unwrap();
        // Three requests of four sequences each, told apart by their lengths.
        let rxs: Vec<_> = [5, 6, 7]
            .iter()
            .map(|&n| b.submit((0..4).map(|_| toks(n)).collect()).unwrap())
            .collect();
        open.send(()).unwrap();
        first.blocking_recv().unwrap().unwrap();
        for rx in rxs {
            assert_eq!(rx.blocking_recv().unwrap().unwrap().len(), 4);
        }
        let log = log.lock().unwrap();
        // Rounds of two: 5 6 | 7 5 | 6 7 | 5 6 | 7 5 | 6 7 (each pass sorted by length).
        assert_eq!(
            log[1..],
            [
                vec![5, 6],
                vec![5, 7],
                vec![6, 7],
                vec![5, 6],
                vec![5, 7],
                vec![6, 7]
            ]
        );
    }

    #[test]
    fn passes_are_sorted_runs_that_pad_little() {
        // Within the budget and with similar lengths: one pass.
        assert_eq!(split_passes(&[2, 2, 3, 4, 5], 64, 8), vec![0..5]);
        // Padding 9 × 5 for 21 real tokens: the longest runs alone.
        assert_eq!(split_passes(&[2, 2, 3, 5, 9], 64, 8), vec![0..4, 4..5]);
        // The padded size caps a pass.
        assert_eq!(split_passes(&[4, 4, 4, 4, 4], 12, 8), vec![0..3, 3..5]);
        // So does the sequence count.
        assert_eq!(split_passes(&[1, 1, 1], 100, 2), vec![0..2, 2..3]);
        // Short queries are not padded to the long texts' length.
        assert_eq!(
            split_passes(&[12, 15, 15, 512, 512], 16384, 64),
            vec![0..3, 3..5]
        );
        // A sequence longer than the budget runs alone.
        assert_eq!(split_passes(&[600, 700], 512, 8), vec![0..1, 1..2]);
    }
}
