"""docs/performance.md: the table of goals, each goal's figures, the machine, the date, how to rerun."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.common import Result

INTRO = """\
Every figure below is a ratio measured side by side with its reference in the same run, by the scripts in
`bench/`: the machines this project is built on are shared and noisy, so absolute times mean little and no test
asserts a time. The sandbox runs in its own process, so the server's figures are the server's own: for goals 1-7
at `--pace fast` (and `--store-only` where a benchmark measures the wire); for goals 8-10, what a user waits for,
at its default pace, with the server spawned over stdio as clients spawn it."""

RERUN = """\
From the repository root, in an environment where the package and its dependencies are installed (for example
the one `.ci/run` builds: `.ci-venv/bin/python -m bench quick`):

```
python -m bench quick     # the CI smoke test: small files, no goal asserted; writes bench/.data/performance-quick.md
python -m bench full      # the figures on this page; writes docs/performance.md
python -m bench full --only 1,6 --output /tmp/perf.md     # some goals only, elsewhere
```

The test files are generated once under `bench/.data/` (gitignored) and reused: about 2 GB for `full`
(a 1 GiB JSONL file among them), 0.4 GB for `quick`. `full` also writes a 5 GiB file for goal 10 and deletes it
after use; it skips that case, and says so, when the disk has less than 15 GB free. The run's own duration is
given at the top of this page. Linux only (the memory figures come from /proc); goals 1 and 8 need `curl` on the
PATH for their reference.
`bench/sandbox_import.py` still runs on its own (goal 7).
Each goal is one module: `bench/uploads.py` (1, 6), `scan.py` (2), `summaries.py` (3), `startup.py` (4),
`polling.py` (5), `sandbox_import.py` (7), `outcome.py` (8), `sharing.py` (9), `memory.py` (10); `fleet.py` starts
the standalone sandboxes and the stdio servers goals 8-10 use; `baseline.py` is the server with the earlier polling
schedule, scan hash and whole-scan-first order, timed beside the current one in goal 8."""

CHANGES = """\
### Goals 8, 1 and 4, fifth round (2026-11-30)

Figures from `python -m bench full --only N` run twice in a row: first the code from before this round (172a54b),
then this round's, both measured by this round's `bench/`. The machine was slower than in earlier rounds: curl's
PUT of 300 MB took 2.3-2.6 s, against 1.16 s in the last full run.

- **A large file's PUT no longer waits for the end of its scan** (`uploads/scan.py`, `_Clearance`;
  `operations/early_put.py`; docs/architecture.md, Files and pre-flight, "A large file").
  - **Before.** The PUT's last chunk waited for the whole scan's verdict. On this machine the scan reads about
    150 MB/s, so for 300 MB the PUT took about 2 s where curl took 1.2 s: the scan, not the store, set its pace.
  - **Now.** The scan says as soon as no failure of the whole file is left. A problem of the file as such (empty,
    binary, not UTF-8, a JSON array, no CSV header) can only come before the first record. "No readable record"
    and "no record" end at the first readable one. A strict key in no record ends once every strict key has had a
    value. No key shared with the schema ends at the first record with one. Most files are cleared at their first
    record. A file that changes while it is read is caught by the PUT itself: it hashes what it sends and stops
    before its last chunk on a mismatch.
  - **The PUT's last chunk** waits for that clearance, or for the verdict if the scan ends first. A file certain
    to fail still never reaches the store whole. The rest of the scan (record count, expected rejections, key
    warning) completes the plan beside the watch of the import, and the outcome waits for it.
  - **Tests.** `tests/uploads/test_files.py` checks when a scan clears a file, and that it never clears one
    certain to fail. `tests/reliability/test_early_put.py` holds a scan after it has cleared its file: the PUT
    ends first, and the outcome still has the record count and the expected rejection.
  - **Measured** (goal 1's "PUT beside the scan", the server's default order; before → after):

    | File | PUT beside the scan | vs curl | whole call |
    |---|---|---|---|
    | 100 MB | 114 → 174 MB/s | 0.39× → 0.69× | 102 → 139 MB/s |
    | 1,074 MB | 146 → 251 MB/s | 0.56× → 0.94× | 129 → 207 MB/s |

  - **Goal 8, 300 MB**, on this slower machine: 1.04× before and 1.04× after. The PUT took 2.33 → 2.13 s, against
    curl's 2.60 / 2.26 s. Here curl was as slow as the scan, so there was little to gain. The gain shows where the
    store is faster than the scan, as in the last full run (2.10 s against curl's 1.16 s).
- **The first rate of an import comes from the server's clock** (`uploads/polling.py`, `ImportJob.processing_seconds`).
  - **Before.** The first rate counted from the watch's start, so the time the import spent queued counted as
    processing. The rate came out low and the predicted end late.
  - **Now.** When the import says when its processing started and when it was last updated (at least 0.2 s
    apart), that span gives the rate. Otherwise the schedule is as before. The count was read at the last
    update, at or before the response, so the predicted end is still never early.
  - **Measured** (terminal status → result; before → after; status requests unchanged):

    | Import | lag | status requests |
    |---|---|---|
    | ~2 s | 1.02 → 0.16 s | 4 |
    | ~8 s | 0.62 → 0.08 s | 5 |
    | ~20 s | 0.47 → 0.18 s | 7 |
    | ~60 s | 0.20 → 0.25 s | 15 |

  - **Test.** `tests/uploads/test_polling.py`: a 2 s import's next poll lands ETA_MARGIN after its end with the
    server's span, and 0.5 s later without it; a span too short to judge gives no rate.
  - **Then the latest rate** (`PollPlanner.observe`; made after the full run this page reports): with the
    server's clock, the rate between its last two counts replaces the average with the earlier ones. In a run of
    goal 8 right after the full run, a 300 MB import sped up as it went, and its end was predicted 0.8 s late
    (1.11×). Goal 8 alone with this: 300 MB at **1.04×**, lag 0.39 s (the same requests). Test:
    `tests/uploads/test_polling.py`, an import speeding up.
- **Goal 4 reads each round's own ratio** (`bench/startup.py`). Each round spawns the minimal server and this one
  (in both modes) one after the other. The ratio is now the median of the rounds' ratios, as goals 1 and 8 do;
  the ratio of the medians stays beside it. Rounds went from 15 to 21.
  - **Why.** The minimal server's median moved from 788 to 941 ms between runs on this machine, while this
    server's start-up stayed about 200 ms above it. A busy minute that fell on more runs of one server than the
    other moved the ratio of the medians from 1.16× to 1.35×.
  - **Alone, right after:** 1.22× (ratio of the medians: 1.26×).
  - **Where the 200 ms goes.** About 100 ms is this package's imports beyond the SDK's: the result and API
    models (about 40 ms of pydantic class building), pydantic-settings, the ledger, and the upload manager. About
    65 ms is the SDK building the schemas of ten tools, against one for the minimal server. The services start
    in the background: the listing comes within about 10 ms of their start.
- **Goal 1 takes 5 rounds per size** instead of 3. Its ratio sits at its limit (0.9×), and in this round's two
  runs, with its path unchanged, it read 1.07× and 0.88×.

### Goal 9, fourth round (2026-11-30)

The figures below come from four runs of `python -m bench full --only 9` right after one another, alternating the
code from before this round (ab0f7ba) with this round's, both measured by this round's `bench/sharing.py`.

| Run | 1 × 15 / 3 × 5 uploads, by round | Throughput | idle, paced | idle, back to back | busy | vs idle |
|---|---|---|---|---|---|---|
| before | 6.26 / 5.31, 7.35 / 9.63, 5.84 / 9.80 s | 0.76× | 9.7 ms | 6.8 ms | 10.9 ms | 1.12× |
| after | 6.62 / 6.13, 7.08 / 6.44, 7.37 / 7.09 s | 1.08× | 8.9 ms | 5.0 ms | 10.0 ms | 1.12× |
| before | 7.99 / 5.83, 6.02 / 10.17, 6.26 / 10.94 s | 0.59× | 10.1 ms | 7.1 ms | 11.8 ms | 1.18× |
| after | 6.95 / 6.06, 6.53 / 5.88, 7.03 / 5.86 s | 1.15× | 9.3 ms | 5.9 ms | 10.2 ms | 1.10× |

- **Goal 9, first half: two imports at a time in the sandbox** (`sandbox/jobs.py`, `SandboxConfig.workers`;
  docs/sandbox.md, Imports at once). Three processes doing five uploads each took 9.6-10.9 s in two of three rounds
  with the earlier code, against about 6 s for one process doing all 15.
  - **The cause.** The sandbox ran every dataset's import at once, each in its own thread, and every thread needs
    the process's one interpreter lock. With 15 at once, each got a fifteenth of it. They all ended at about the
    same moment, and the event loop, which writes each terminal status and answers the API, waited behind them
    all. In one such run, one import's terminal status was written 2.6 s after its last record.
  - **The fix.** At most two imports or migrations are processed at once, across datasets; the others stay
    `queued` and start in arrival order. Two, so that one long import never holds up every other dataset. In 12
    alternating runs of 15 uploads, a limit of two took 6.36 s on average against 6.87 s with no limit (5.58-6.87 s
    against 5.77-7.54 s).
- **Goal 9, second half: idle is measured at the pace of the calls it is compared with** (`bench/sharing.py`).
  - **Before.** The busy calls came one every 50 ms, and the idle ones back to back. A call that follows another at
    once finds the client, the server and the sandbox still running. After a pause, each process has to be woken
    first. The same calls, same code: 7.9 / 7.8 ms back to back, against 11.0 / 11.8 ms one every 50 ms (two runs).
  - **Now.** Idle is timed at the same pace as the calls during the upload, as an agent makes them: seconds apart,
    never back to back. The back-to-back figure is kept in the table beside it. Against it the ratio is about 1.7×
    to 2.0×, with the earlier code and with this round's alike.
  - **What this means.** With the earlier code the goal already held at 1.12× and 1.18× when measured this way. The
    code changes below make every call faster, idle and busy alike, not the ratio.
- **Every tool call: no worker thread and no connection to the sandbox just to check on it**
  (`server/supervisor.py`). Each call used to make the supervisor's whole check in a worker thread: the process,
  the address file, and a new TCP connection to the sandbox's port, which the sandbox had to accept.
  - The watchdog still makes that check every 0.5 s.
  - A call now trusts a check passed within the last second, once the process is seen alive, on the event loop.
  - A killed sandbox is still caught by the very next call (test: `tests/server/test_supervisor.py`).
- **Every dataset view: no ledger write when nothing but the time changed** (`operations/deps.py`). `get_dataset`
  wrote the dataset's `last_seen` to the ledger on every call (a worker thread and a SQLite transaction).
  - The time is now written once a minute at most per dataset and process, and kept exactly in memory.
  - `list_datasets` orders this process's datasets by it; other processes see that order to the minute.
  - A new dataset, a new name or workspace, or a stronger source is written at once.
- **The sandbox's GET dataset: one trip to its store's thread instead of two** (`sandbox/api.py`).
- **Together** (the server over stdio, 800 calls of `get_dataset`, alternating the earlier code and this round's):
  - The server's own CPU per call went from 5.3-5.5 ms to 3.3-4.7 ms.
  - The call, idle, went from 7.5-7.9 ms to 5.2-5.3 ms back to back, and from 9.4-10.5 ms to 8.5-8.6 ms at one call
    every 50 ms.
  - During the other server's 1 GiB upload it went from 10.6-14.2 ms to 9.7-9.9 ms.

- **Goals 4 and 8 (300 MB) read above their limits in the run above, and goal 1 sits at its limit; no code of this
  round is on their paths, and neither is met here.**
  - **Goal 8, 300 MB: 1.16×** (goal 1.1×). Each run's three uploads (the floor, `upload_file`, the earlier code)
    always went in that order, so each followed another's write-back of 300 MB of file and as much of datapoints.
    `bench/outcome.py` now starts each after `os.sync` and turns the order by round, as goals 1 and 9 do. Goal 8
    alone with that, right after the run above: 1.13× (1 MB) and **1.19×** (300 MB), lag 0.31 s median and 1.37 s
    worst. So the order was not the cause, and the 300 MB file is not met.
  - **Where goal 8's 300 MB case loses** (medians of that run: `upload_file` 9.50 s against the floor's 8.88 s):
    - the hash pass before the ledger's claim, 0.30 s;
    - the PUT beside the scan, 2.39 s against curl's 2.15 s;
    - the lag from the terminal status to the result, 0.48 s, against the floor's polls every 50 ms.
    The import itself took as long after either PUT (6.52 / 6.56 s), and its own time moves by up to 1 s from run
    to run. The pair ratios therefore spread widely: the medians' ratio is 1.07× while the median of the pairs'
    ratios, the figure the goal reads, is 1.19×.
  - **What would close it.** The lag follows the polling schedule's first rate estimate, which counts the import's
    queued time as processing; a shorter lag costs requests, and goal 5 allows none at 5 s. A cheaper pre-flight
    would need the claim without the whole-file hash.
  - **Goal 4, start-up: 1.35×** (goal 1.3×; 1.16-1.29× in earlier runs). The minimal server started in 886 ms in
    the run above, against 918-941 ms before; this server took 1,196 ms, as before.
    - The difference is about 0.3 s. About 0.1 s is this package's imports beyond the SDK's (the result and API
      models, pydantic-settings), and about 0.065 s is the SDK building the schemas of ten tools.
    - Tried and not kept: building the API models on first use (`defer_build`, 33 → 14 ms of import, paid again at
      the first call) and the result models likewise (no gain: the tools' schemas build them at once).
    - Right after, at 3aaf932 (the workers wait after the queued pace; nothing on the start-up path),
      `python -m bench full --only 4,9` read goal 4 at **1.22×** and goal 9 at 1.13× / 1.12×. Goal 4 reads
      1.16-1.35× from run to run on this machine: met on a quiet minute, not by a margin that holds.
  - **Goal 1: 0.90×** (goal 0.9×), met at its edge: curl reached 259-266 MB/s in this run, where `upload_file`'s
    PUT read 232-241 MB/s (1.08× in the last run, when curl read about 130 MB/s).

### Goal 7, third round (2026-11-30)

- **Goal 7: an index of 8-byte integer keys in place of 16-byte digests** (`sandbox/identities.py`,
  `sandbox/importer.py`; docs/sandbox.md, Storage). py-spy had put about half an import in SQLite's identity
  inserts. In-process, an import of 1,000,000 records with the index turned off ran at about 200,000 records/s
  against 100,000 with it. The index now keeps 8 of the digest's 16 bytes per distinct record, as a signed integer
  with the id of its segment. A chunk's keys go in as one sorted JSON array that SQLite unpacks (`json_each`),
  instead of one row bound from Python per record. A taken key is never trusted: the record is then compared by
  its whole digest with those of the key's segment, recomputed from their stored lines, and a distinct record that
  shares only the key is stored, its digest kept apart. So duplicate detection stays exact, and tests make keys
  coarse to prove it.
  - Three alternating runs of `bench/sandbox_import.py`, the code before against after: 86,478 / 94,319 / 91,611
    against 124,504 / 139,277 / 122,952 records/s (about 1.4×).
  - A second import of the same 1,000,000 records (all duplicates) runs no slower: about 86,000 → 96,000
    records/s, two runs each.
  - Tried and not kept: a 16-byte key split in two integer columns, or the rest of the digest beside the key
    (each about 1.1× the old index, from the larger entries); the segments as files outside SQLite (their writes
    were not where the time went).
- **Goal 1: the next chunk is read and hashed while the current one is sent** (`api/s3.py`). The full run of
  this round read the 1 GiB PUT at 0.75× curl, though nothing of the upload had changed. One cost found on the way:
  the PUT hashed each chunk (to catch a file edited during its upload) on the event loop, between reading it and
  sending it, and none of the three overlapped. Now the reader's own thread reads and hashes chunk N+1 while
  chunk N goes out.
  `ProlificClient.put_file` of the 1 GiB file to the store-only sandbox, two runs each: 190 / 172 MB/s (2.0 /
  2.2 s of the sender's CPU) before, 254 / 249 MB/s (1.7 s) after, and 260 / 271 MB/s without any hash. A test
  checks that the next read has begun before a chunk goes out. In the benchmark's own setting this did not lift
  goal 1 (see below).
- **Goal 4: the HTTP transport is imported only to serve HTTP** (`cli.py`), a few ms off every stdio start.
  What start-up costs beyond the minimal server, measured in-process: about 110 ms of imports (mostly pydantic
  building the wire and result models) and 60 ms of the SDK building the ten tools' schemas.
- **Goal 1: the benchmark made `upload_file`'s PUT pay for curl's** (`bench/uploads.py`). This round's first two
  full runs read the 1 GiB PUT at 0.75× and 0.73× curl, and two runs of goal 1 alone at 0.93× and 0.84×.
  `upload_file`'s PUT read 121-136 MB/s in all four, while curl moved between 133 and 272 MB/s.
  - **The cause.** The store-only sandbox writes every body to disk, and each round ran curl first, then
    `upload_file`. So `upload_file`'s PUT always ran while the disk wrote back curl's 1 GiB: the machine then
    held about 2.2 GB of dirty pages. A replication in the bench's order showed both slowing together round after
    round, with the second of each pair the slower. Curl ran at 171 / 124 / 116 MB/s, `upload_file` at
    162 / 128 / 109.
  - **The fix.** Each PUT now starts once the disk has written back what came before (`os.sync`), and who goes
    first alternates by round. Goal 1 alone then read 1.01× (both at about 130 MB/s, in a run where curl alone
    reached 278).
- **Goal 9, second half: the ratio follows the idle time.** `get_dataset` during the 1 GiB upload took 12 ms in
  the last round's full run and in this round's first two, but its idle time, the ratio's denominator, read 11, 9
  and 6 ms. So the ratio went 1.13× → 1.33× → 1.69×. It says how quiet the machine was while idle was measured
  more than it says anything about the code. The first half read 1.11×, 0.83× and 0.80×.

- **Goal 9 read 0.74× / 1.62× in the run above, not met; no code of this round is the cause.** Right after that
  run, goal 9 ran alone four times, alternating the code from before this round (64370d4) with this round's.
  - Before: 0.86× / 1.80× and 1.08× / 1.45×. After: 0.83× / 1.38× and 0.82× / 1.82×.
  - The uploads got faster: one process doing 15 took 6.2-7.3 s with this round's code against 7.5-10.0 s
    before, while three processes took about as long as before (6.5-9.7 s against 6.2-13.6 s). The ratio compares
    the two, so a faster single process lowers it.
  - `get_dataset` took 11-14 ms during the upload with both codes. Its idle time, the ratio's denominator, moved
    between 6 and 11 ms from run to run.
  - What goal 9 needs is a floor that holds on a shared 2-core machine. One way would be to measure the idle
    time beside each loaded call instead of before and after. Another is to make the three processes' own cost
    smaller. Neither was done this round.

### Goals 1, 8 and 9, second round (2026-11-30)

Goal 8's before and after are in its own table above (the earlier code, `bench/baseline.py`, now also scans the
whole file before the PUT, as before this round). The other figures below come from runs of `python -m bench full
--only N` on the same machine the same night, before and after each change; the machine was shared (another
engineer's benchmarks and test runs), so each figure is given with its spread.

- **Goal 8, 300 MB: the PUT beside the scan** (`operations/early_put.py`, `uploads/background_scan.py`,
  `uploads/scan_child.py`, `api/s3.py`). The pre-flight scanned the whole file (1.45-1.7 s for 300 MB) before the
  PUT (1.3-1.4 s) could start, because the ledger's claim, taken before any upload URL, is keyed by the sha256.
  Now a first upload of a file of 64 MiB or more is hashed alone (0.3 s per 300 MB from the page cache) while its
  scan starts in a child process; with the sha256 it is claimed exactly as before; the PUT then runs beside the
  scan and holds its last chunk until the scan's verdict. Goal 8 alone, same session: **1.23× → 1.00×** the floor
  (pre-flight 1.64 s → 0.31 s), then 1.05× and 1.19× in two later runs of 3 (the import's own time moves by about
  0.5 s from run to run, more than the gain: goal 8 now takes the median of 5 runs). What it keeps:
  - a file certain to fail imports nothing: the verdict stops the PUT before its last chunk, so the store never
    has the whole body and the import stays `uninitialised`; the call refuses the file with the ordinary
    pre-flight's words and says the import it opened received nothing; the same file again is refused before any
    URL (the ledger knows it). A failure visible in the first bytes (a binary file) ends the scan before the hash,
    so it is refused before any URL at once (the scan without a hash to finish stops reading there);
  - one import however many calls race: the claim is the same; latecomers wait for their own scan and attach;
  - the store's patience: the PUT never runs further ahead of the scan than the scan reads in 5 s at its rate so
    far (at least 32 MiB), so the last chunk waits about 5 s at most (S3 drops a connection idle for about 20 s),
    and the upload URL is asked for only once the scan has its turn (two child scans at once);
  - the GIL: parsing in a thread of the server slowed every chunk of the PUT (one GIL, 2 cores); the child
    process has its own, starts in 0.1 s (`uploads/scan.py` was split out of `files.py` so that it imports little:
    0.4 s before) and runs at niceness 10, so the server's answers and the PUT come first.
  Costs: a large file refused only at the end of its scan (no key shared with the schema, say) leaves one empty
  import at Prolific, named in the refusal; the PUT phase of a large file is longer than the PUT alone (goal 1's
  table gives both).
- **Goal 1: 4 MiB chunks for files of 64 MiB or more** (`uploads/jobs.py`; 1 MiB below, as before): a quarter of
  the reads, hashes and thread hops per byte, for 3 MiB more memory per upload in flight. The 1 GiB PUT read
  0.88× curl before and 0.91× after, one run each (curl itself ranged 142-279 MB/s in these runs). Goal 1 now
  measures the PUT alone (`bench/serve.py --preflight-first`) and gives the default order beside it.
- **Goal 9: the sandbox steps aside for its API** (`sandbox/traffic.py`, `sandbox/importer.py`,
  `sandbox/s3.py`). The sandbox counts the API requests in flight; an import or migration pauses between records
  (and between batches of 1,000 identity inserts), and the fake S3 stops reading a body between chunks, while any
  is, for at most 50 ms, followed by at least as long of work (a stream of requests slows an import, never stops
  it). Three alternating runs of goal 9 before and after (without the early PUT): whole call 1.67 / 2.04 / 1.66×
  → 1.50 / 1.57 / 1.80× idle; the server's `get_dataset` during the import 15-16 → 11-13 ms, during the PUT 17-20
  → 15-17 ms; the sandbox's own answer during the PUT 5.6-6.0 → 4.3-5.0 ms. Tried and not kept: the body's MD5
  and writes in a worker thread (worse), the import thread at `SCHED_IDLE`, a 0.2 ms GIL switch interval (no
  gain). An import in a child process took about 0.6 ms more off the sandbox's answer during an import, left for
  later. With this round's other changes too (the scan of the uploader's 1 GiB file in a child process at
  niceness 10, beside its PUT): 1.38× in a run of goal 9 alone (the PUT phase 2.27×), 1.13× in the run above (the
  PUT phase 1.15×); this half of goal 9 is met, with a thin margin in the PUT phase. What remains is CPU, not the
  GIL: on 2 cores the upload (the sender, the receiver, the scan) keeps both
  busy, and the reading server and its client wait for them; with curl in place of the uploading server, the
  reading server's own part still grows from 3.9 to 6.5 ms during an import.
- **Goal 7 read 84,141 records/s in the run above, under its goal; no code of this round slowed it, and the
  identity inserts now go in key order** (`sandbox/importer.py`). Right after the run, alternating the code from
  before this round (4935e60) and this round's, `bench/sandbox_import.py` read 88,663 / 97,354 against 88,486 /
  93,753 records/s: the sandbox's pauses for its API cost nothing measurable, and the 110,311 of 02:19 (cd80121)
  came at a quieter moment of this shared machine. Where the time goes (py-spy on the sandbox during the import):
  48% in SQLite's identity inserts, one `executemany` per chunk of random 16-byte digests. Inserted in key order,
  they walk the index's pages once per chunk: six alternating pairs, unsorted against sorted, read 81,530 /
  87,819 / 96,291 / 98,630 / 87,396 / 91,824 against 86,240 / 105,367 / 98,372 / 92,029 / 101,502 / 111,585
  records/s (medians 89,800 → 100,000; committing every 2 s instead of 0.5 s gained nothing beside it and was
  not kept). Three runs of `python -m bench full --only 7` with it: 104,782 / 98,801 / 83,235 records/s. The
  goal is met at this machine's quiet moments only: its figure moves by ±12% with the load, so a margin needs a
  cheaper identity store, not a tweak.

### Goals 8-10, first round (2026-11-30)

The figures of this round are from its own full run (at 6b14a2e, "the run above" below), not the tables above.
Goal 8's before and after were in its own table: every run timed the server with the earlier code
(`bench/baseline.py`: the earlier polling schedule and scan hash) beside the current one, against the same floor.
Goals 9 and 10 give the earlier figures from runs of `python -m bench full --only 9` and `quick --only 10` on the
same machine the same night, before each change. That run shared the machine with a full test suite (load 1-2.8
on 2 cores) from goal 1 to goal 9, so take every figure as indicative.

- **Goal 8, a small file: 3.53× → 1.20× the floor in the run above** (3.26-3.60× → 1.21-1.30× in three runs;
  `uploads/polling.py`). The watch asks once when the PUT ends (the import is always still `queued` then), and
  the schedule then waited 3 s: an import done in 0.8 s was reported at about 3 s (terminal → result 2.13 s).
  Now the next request comes 1 s after the PUT when the pre-flight's record count is known (3 s, the CLI's, when
  it is not: migrations, appends, imports this server has no count for); once a processing rate is seen, the
  next request goes to the predicted end + 0.3 s, even past the growing interval (never more than 5 s away);
  jitter only on the interval. Terminal → result: 0.17 s. On goal 5's virtual clock a 5 s import still costs
  the CLI's 3 requests, 600 s 0.61× its requests (was 0.66×). Tests on the virtual clock: an import of 0.5-2 s
  is seen within 0.7 s of its end with at most 3 requests; a 5 s import costs at most the CLI's 3.
- **Goal 8, 300 MB: 1.34× → 1.30× in the run above (not met; goal 1.1×)** (`uploads/files.py`). The pre-flight
  scan computed the sha256 in the thread that parses; it now runs in a thread of its own beside the parsing
  (hashlib releases the GIL), so the scan takes the longer of the two when a second core is free: 300 MB in
  1.45 s instead of 2.4 s measured alone, and 1.43× → 1.27× in a run of goal 8 alone. In the run above the
  second core was busy with the test suite and the pre-flight took as long as before (2.17 s → 2.31 s): the
  gain left is the shorter wait after the import (terminal → result 0.55 s → 0.18 s). The scan still runs before
  the PUT; see below for what would hide it.
- **Goal 9, `get_dataset` during another process's 1 GiB upload: 2.41× → 2.14-2.30× idle (not met; goal 1.5×)**
  (`sandbox/cli.py`, `sandbox/importer.py`). The sandbox's own API, which the call goes through, slowed from
  1.5 ms to 7.4 ms while the import's worker thread held the GIL (5.1× idle). A sandbox in its own process now
  switches the GIL every 1 ms (Python's default is 5 ms), and imports and migrations run at niceness 10 (Linux,
  per thread): the sandbox's own answer during the import is 3.5-4.2 ms (2.0-2.2× idle). The rest of the gap is
  on the calling side: on 2 cores, the import takes one core and the calling server, the client and the
  sandbox's event loop share the other. Throughput of 3 processes × 5 uploads against 1 × 15: 0.95-1.17×, met
  before and after.
- **Goal 10, a 9 MB record imported then rejected: +155 MB → +38 MB** (`text.py`, `uploads/rejections.py`).
  `one_line`, which cuts an excerpt to 80 characters, folded the white space of the whole value first (1.5 M word
  strings for a 9 MB text): it now reads the text in windows of 4 × its limit and stops once the folded prefix is
  longer than the limit (the same result: folding a prefix gives a prefix of the folded text; a test holds it
  equal to folding everything, and bounds its memory). Reading the rejected records back skips blank lines
  without copying them, and the records kept for excerpts are cut to 4 KB each. The worst case is now 20
  uploads of 50 MB at once (+74 MB).
- **Goal 6 failed once in this round's first full run**: an upload URL under 20 concurrent uploads came back as
  "closed before the answer". The sandbox closed idle connections after 5 s, exactly when httpx's pool retires
  them, so a request could go out on a connection the sandbox was closing; it now keeps them 30 s
  (`sandbox/runtime.py`).
- **Goals 1, 2 and 7 read below their goals in the run above**, which shared the machine with the test suite.
  Goal 1's PUT was not measured again. Goals 2 and 7 were, side by side with 441e9fd (the commit that first met
  them, 2026-11-23; 1666d7e, just before it, is the scan of 0.88×), alternating old and new in one session:
  - **Goal 2, the scan: 0.75-1.04× → 1.26-1.45× the json loop** (441e9fd: 1.36-1.53× in the same runs). Since
    441e9fd the scan keeps integers beyond 64 bits exact, and with the dataset's schema it walked every
    record whose metadata is an object, about 1 µs a record: it now keeps exact only task_group_id values,
    the one check that tells an integer from the float orjson makes of it (`checked_exact_keys_of`); the
    sandbox, which stores metadata, still keeps every number exact. The file-keys tracking (for the key checks)
    built a dict per record: now one subset test against the keys seen. The big-integer test on one or two keys
    runs inline in the JSONL loop (no call per record). The 10 MiB line cap costs nothing measurable; the
    sha256 thread saves about 7%.
  - **Goal 7, the sandbox's import: no regression in the code.** 441e9fd (Python's 5 ms GIL switch interval, no
    niceness) and the current code (1 ms, the import's thread niced to 10) import at the same rate here (above).
    The 149,000-156,000 of 2026-11-23 were on another CPU (AMD EPYC, where the json loop ran 233 MB/s on the
    1 GiB file; 121-169 MB/s on this Intel Xeon), and the 84,098 above ran beside the test suite (load up to
    2.8 on 2 cores). The margin over the goal is thin on this machine: parsing, validating and digesting alone
    run at 210,000-330,000 records/s, so SQLite's writes (the identity index, the segments) take about half.

Measured and left for later:

- **Hiding the pre-flight behind the PUT** (goal 8, 300 MB; done in the second round above, with the scan in a
  child process rather than a thread). The ledger's claim is keyed by the sha256 and taken
  before an upload URL is asked for, so the PUT cannot start before a hash pass; a sha256-only pass costs 0.6 s
  per 300 MB here (no SHA extensions), about half the scan. The design that keeps the claim first: hash, claim,
  ask for the URL and start the PUT while the parsing runs in a worker thread, holding the PUT's last chunk until
  the scan's verdict (a certain failure aborts the PUT before its last byte, so the store keeps nothing and the
  import stays `uninitialised`). Its costs: every refused attempt of a large file leaves an empty import at
  Prolific, and on 2 cores the parsing thread, the PUT's event loop in the same process (one GIL) and the
  sandbox's receiver share the cores, so the gain is less than the scan's time.
- **The sandbox's import in a child process** (goal 9; the second round made the import and the receiver pause
  for the API instead, above): no GIL shared with its API at all; the fake S3 served from
  its own thread and event loop (it already has its own port) would do the same for the PUT phase.

### Goals 1-7 (2026-11-23)

Measured on the 2-core development machine on 2026-11-23, the code before each change against the code after it
(same files, same session, alternating runs):

- Goal 2, the scan against the `json` loop: **0.88× → 1.33×** on 1 GiB of dataset records, **0.75–0.78× →
  1.36–1.39×** on 1,000,000 small records (`RecordValidator` compiled per schema; the scan asks for the problem
  only).
- Goal 7, the sandbox's import (the same validator): **130,000 → 151,000–156,000 records/s**.
- Goal 4, start-up: **1.22× → 1.15×** the minimal server over 15 alternating runs (starting the sandbox child
  imported 23 ms of modules on the event loop; now 1.3 ms).

- **The one-pass scan.** Per record it parsed with `orjson`, then validated every field through a generic loop
  (a tuple unpacked, a call per field, a URL regex and its groups) and built a normalised copy it threw away. Now
  `RecordValidator` compiles each schema once into straight-line code: `problem()` for the scan (no copy),
  `check()` with the normalised record for the sandbox. The common accepted values (a string within the length
  limit, metadata, a plain `http(s)` URL, a group id) are accepted inline; every other value goes through the
  same per-type check as before, which alone decides and words the problem. A property test holds the compiled
  validator equal to the per-field rules on random schemas and records.
- **Start-up.** Starting the sandbox child imported the whole emulator (`prolific_mcp.sandbox` imported every
  module, and `sandbox/process.py` imported the server module for its ready-line pattern) on the server's event
  loop, while the client waited for its first answers.
- **A wrong refusal found on the way.** The strict-schema check of the scan stopped looking for the schema's
  keys once it had seen as many keys as the schema has, counting keys outside the schema: a file whose first
  record had extra keys could be refused for a key that only later records have. It now tracks the schema's
  keys only (a test covers it).

Measured and left for later (every goal above is met without them):

- `get_import_status` re-checks the local file's sha256 with a full `scan_file` (every record parsed) on the
  event loop: about 2.4 s per GiB during which no other call is served. A sha256-only pass in a worker thread
  costs about 0.7 s per GiB, off the loop.
- In Prolific mode the API client (an `httpx2.AsyncClient`, which builds an SSL context: 20–40 ms) is created on
  the event loop while the first requests are answered: start-up is 1.25× the minimal server there, 1.18× in
  sandbox mode. Creating it in a worker thread would close most of the gap.
- After an import, the excerpts and the rejected-records file each read the itemised records back out of the
  file (two passes where one would do; 115 ms in the worst layout above).
- A PUT sends one progress notification per MiB (about 1,000 per GiB): 0.1–0.4 s of the server's CPU per GiB
  and as much in the client, which on 2 cores competes with the receiver. 4 MiB chunks measured +3–10% on the
  PUT ratio for +13 MB of memory.
- 20 uploads at once scan their files in 20 threads, which starve the event loop's PUTs until the scans are
  done (all PUTs start after the last scan); at most 2 scans at a time measured 1.05–1.13× instead of
  0.97–0.99× in the same session, at the cost of small files waiting behind large ones.
"""


def render(
    results: Sequence[Result], *, size: str, when: str, duration: float, machine: dict[str, str], extra: dict[str, str]
) -> str:
    lines = [
        "# Performance",
        "",
        INTRO,
        "",
        f"This page was written by `python -m bench {size}` on {when}; the whole run took {_duration(duration)}.",
        "",
        "## Goals",
        "",
        "| # | What | Goal | Measured | Ratio | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.number} | {r.title} | {r.goal} | {r.measured} | {r.ratio} | {r.verdict} |")
    lines += ["", "## The machine", ""]
    for key, value in {**machine, **extra}.items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", "## How to rerun", "", RERUN, ""]
    for r in results:
        lines += [f"## {r.number}. {r.title}", "", f"Goal: {r.goal}. Measured: {r.measured} — {r.verdict}.", ""]
        lines += [*r.details, ""]
    lines += ["## What was changed to meet these goals", "", CHANGES]
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
