"""A queueing model of ONE vLLM replica with continuous batching, advanced in virtual time.

The engine runs back-to-back *steps* (vLLM v1's scheduler iterations) while it has work. In each
step every decoding sequence emits one token, and the rest of the step's token budget
``B = max_num_batched_tokens - decoding`` goes to prefill (chunked prefill): first to prompts
already being prefilled, then to waiting requests admitted in FCFS order. A step lasts::

    step_s = decode_step_base_s + decode_step_per_seq_s * decoding + prefill_tokens / prefill_tokens_per_s

A request is admitted (leaves ``waiting``) at the start of a step when it has arrived by then,
a batch slot is free (``running < max_num_seqs``) and the KV cache has room for its final length
``ceil((prompt + output) / block) `` blocks. Reserving the final length means the model never
preempts; vLLM instead admits on the prompt's blocks and preempts (recomputes) when the cache runs
out. With the default capacity (~400k tokens against ~1.4k tokens per request) that bound rarely
binds; with a small cache it bounds admission earlier than vLLM would. The KV *usage* reported is
the blocks actually filled, ``sum ceil(tokens_so_far / block)``, as vLLM's gauge reports.

The step that completes a prompt's prefill emits its first token (TTFT = that step's end - arrival);
the request then emits one token per step until ``output_tokens``; each gap between two of its
tokens is one inter-token latency (ITL) observation.

Why event-driven and not step-by-step: while no request arrives, finishes or is admitted, the batch
is constant, so every step has the same length ``d`` and the next ``k`` steps can be committed at
once (one :class:`StepSpan`), where ``k`` is the steps to the next completion (a heap of finish
step numbers) or to the first step that starts at or after the next admissible arrival:
``ceil((arrival - now) / d)``. Work is then O(requests log batch), not O(steps x batch): a 1-hour
trace at ~5 req/s is ~20k requests and ~60k spans, against ~4M decode steps.

Time is an input: ``advance(to_s)`` commits whole steps ending by ``to_s`` and never reads a clock.
With ``partial=False`` a decode run that would end after ``to_s`` is left uncommitted (its state
does not change before its end), which keeps routing exact while cheap; ``partial=True`` commits
the whole steps that fit, so token counters and ITL histograms move smoothly for live exposition.
Both give the same timeline: the split of a run into spans does not change any step.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from ember_sim.params import ReplicaParams
from ember_sim.records import Outcome, Request, RequestRecord, StepSpan

EPS_S = 1e-9


@dataclass
class _Seq:
    """A request inside the batch (prefilling or decoding)."""

    req: Request
    admitted_s: float
    blocks: int
    prefilled: int = 0
    first_token_s: float | None = None
    # value of the replica's step counter after the step that emitted the first token
    first_step: int = 0


@dataclass(frozen=True)
class Gauges:
    """Instantaneous state, as vLLM's gauges report it."""

    running: int
    waiting: int
    kv_used_blocks: int
    kv_blocks: int

    @property
    def kv_usage(self) -> float:
        return self.kv_used_blocks / self.kv_blocks


@dataclass
class Replica:
    """One engine. Append-only outputs: `records`, `spans`, `ttft_at_s`/`ttft_s`, `routed_at_s`."""

    id: str
    params: ReplicaParams
    now_s: float = 0.0
    records: list[RequestRecord] = field(default_factory=list)
    record_end_s: list[float] = field(default_factory=list)
    spans: list[StepSpan] = field(default_factory=list)
    ttft_at_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    routed_at_s: list[float] = field(default_factory=list)
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    _waiting: deque[tuple[float, Request]] = field(default_factory=deque)
    _prefilling: list[_Seq] = field(default_factory=list)
    _decoding: dict[str, _Seq] = field(default_factory=dict)
    _finish_heap: list[tuple[int, int, str]] = field(default_factory=list)
    _order: int = 0
    _steps: int = 0
    _reserved_blocks: int = 0

    # ---- inputs -------------------------------------------------------------------------------

    def submit(self, req: Request, at_s: float | None = None) -> None:
        """Queue `req`, available for admission from `at_s` (default: its arrival; later if it was held)."""
        avail_s = req.arrival_s if at_s is None else at_s
        if avail_s < self.now_s - EPS_S:
            raise ValueError(f"{req.id} submitted at {avail_s} before replica {self.id} time {self.now_s}")
        self.routed_at_s.append(avail_s)
        if self.params.blocks_for(req.prompt_tokens + req.output_tokens) > self.params.kv_blocks:
            self._finish(RequestRecord(req, self.id, Outcome.TOO_LONG, finished_s=avail_s))
            return
        self._waiting.append((avail_s, req))

    def advance(self, to_s: float, partial: bool = False) -> None:
        """Commit every step that ends by `to_s` (see the module docstring for `partial`)."""
        while self._step(to_s, partial):
            pass

    def fail_all(self, at_s: float) -> list[RequestRecord]:
        """Lose every queued and running request at `at_s` (the replica is gone); returns their records."""
        lost: list[RequestRecord] = []
        for _, req in self._waiting:
            lost.append(RequestRecord(req, self.id, Outcome.REPLICA_REMOVED, finished_s=at_s))
        for seq in [*self._prefilling, *self._decoding.values()]:
            lost.append(
                RequestRecord(
                    seq.req,
                    self.id,
                    Outcome.REPLICA_REMOVED,
                    finished_s=at_s,
                    admitted_s=seq.admitted_s,
                    first_token_s=seq.first_token_s,
                )
            )
        self._waiting.clear()
        self._prefilling.clear()
        self._decoding.clear()
        self._finish_heap.clear()
        self._reserved_blocks = 0
        for rec in lost:
            self._finish(rec)
        return lost

    # ---- observations -------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests accepted and not finished: waiting + running (the router's load measure)."""
        return len(self._waiting) + len(self._prefilling) + len(self._decoding)

    def gauges(self, at_s: float | None = None) -> Gauges:
        """State at `at_s` (>= now_s): whole decode steps of the uncommitted run count as done."""
        extra = 0
        if at_s is not None and self._decoding and not self._prefilling:
            d = self.params.decode_step_s(len(self._decoding))
            extra = max(0, math.floor((at_s - self.now_s) / d + EPS_S))
        used = sum(self.params.blocks_for(s.prefilled) for s in self._prefilling)
        for s in self._decoding.values():
            done = min(s.req.output_tokens, 1 + self._steps + extra - s.first_step)
            used += self.params.blocks_for(s.req.prompt_tokens + done)
        running = len(self._prefilling) + len(self._decoding)
        return Gauges(running, len(self._waiting), used, self.params.kv_blocks)

    # ---- the engine loop ----------------------------------------------------------------------

    def _step(self, to_s: float, partial: bool) -> bool:
        start = self.now_s
        if self._prefilling or self._admissible(start):
            return self._mixed_step(start, to_s)
        if self._decoding:
            return self._decode_run(start, to_s, partial)
        # idle: jump to the next arrival or to `to_s`
        nxt = self._waiting[0][0] if self._waiting else math.inf
        target = min(nxt, to_s)
        if target <= start:
            return False
        self.now_s = target
        return target < to_s

    def _fits(self, req: Request, extra_seqs: int = 0, extra_blocks: int = 0) -> bool:
        seqs = len(self._prefilling) + len(self._decoding) + extra_seqs
        need = self.params.blocks_for(req.prompt_tokens + req.output_tokens)
        blocks = self._reserved_blocks + extra_blocks + need
        return seqs < self.params.max_num_seqs and blocks <= self.params.kv_blocks

    def _admissible(self, start: float) -> bool:
        if not self._waiting:
            return False
        avail_s, req = self._waiting[0]
        return avail_s <= start + EPS_S and self._fits(req)

    def _plan_prefill(self, start: float) -> tuple[list[tuple[_Seq, int]], list[tuple[Request, int]]]:
        """Chunks for this step: continuing prefills first, then FCFS admissions, within the budget."""
        budget = self.params.max_num_batched_tokens - len(self._decoding)
        chunks: list[tuple[_Seq, int]] = []
        for seq in self._prefilling:
            if budget <= 0:
                break
            c = min(seq.req.prompt_tokens - seq.prefilled, budget)
            chunks.append((seq, c))
            budget -= c
        admits: list[tuple[Request, int]] = []
        extra_blocks = 0
        for avail_s, req in self._waiting:
            if budget <= 0 or avail_s > start + EPS_S or not self._fits(req, len(admits), extra_blocks):
                break  # FCFS: vLLM's scheduler stops at the first request it cannot schedule
            c = min(req.prompt_tokens, budget)
            admits.append((req, c))
            extra_blocks += self.params.blocks_for(req.prompt_tokens + req.output_tokens)
            budget -= c
        return chunks, admits

    def _mixed_step(self, start: float, to_s: float) -> bool:
        chunks, admits = self._plan_prefill(start)
        prefill = sum(c for _, c in chunks) + sum(c for _, c in admits)
        end = start + self.params.step_s(len(self._decoding), prefill)
        if end > to_s + EPS_S:
            return False
        for req, c in admits:
            self._waiting.popleft()
            seq = _Seq(req, start, self.params.blocks_for(req.prompt_tokens + req.output_tokens))
            self._reserved_blocks += seq.blocks
            self._prefilling.append(seq)
            chunks.append((seq, c))
        for seq, c in chunks:
            seq.prefilled += c
        decoding = len(self._decoding)
        self._steps += 1
        self._complete_decoders(end)
        done = [s for s in self._prefilling if s.prefilled >= s.req.prompt_tokens]
        self._prefilling = [s for s in self._prefilling if s.prefilled < s.req.prompt_tokens]
        for seq in done:
            self._first_token(seq, end)
        self.prompt_tokens_total += prefill
        self.generation_tokens_total += decoding + len(done)
        self.spans.append(StepSpan(start, end, 1, decoding, prefill, len(done)))
        self.now_s = end
        return True

    def _decode_run(self, start: float, to_s: float, partial: bool) -> bool:
        n = len(self._decoding)
        d = self.params.decode_step_s(n)
        k = self._finish_heap[0][0] - self._steps
        if self._waiting and self._fits(self._waiting[0][1]):
            k = min(k, max(1, math.ceil((self._waiting[0][0] - start) / d - EPS_S)))
        if start + k * d > to_s + EPS_S:
            if not partial:
                return False
            k = math.floor((to_s - start) / d + EPS_S)
            if k <= 0:
                return False
        end = start + k * d
        self._steps += k
        self.generation_tokens_total += n * k
        self.spans.append(StepSpan(start, end, k, n))
        self._complete_decoders(end)
        self.now_s = end
        return True

    def _first_token(self, seq: _Seq, at_s: float) -> None:
        seq.first_token_s = at_s
        self.ttft_at_s.append(at_s)
        self.ttft_s.append(at_s - seq.req.arrival_s)
        if seq.req.output_tokens == 1:
            self._release(seq, at_s)
            return
        seq.first_step = self._steps
        self._decoding[seq.req.id] = seq
        self._order += 1
        heapq.heappush(self._finish_heap, (self._steps + seq.req.output_tokens - 1, self._order, seq.req.id))

    def _complete_decoders(self, at_s: float) -> None:
        while self._finish_heap and self._finish_heap[0][0] <= self._steps:
            _, _, rid = heapq.heappop(self._finish_heap)
            self._release(self._decoding.pop(rid), at_s)

    def _release(self, seq: _Seq, at_s: float) -> None:
        self._reserved_blocks -= seq.blocks
        self._finish(
            RequestRecord(
                seq.req,
                self.id,
                Outcome.COMPLETED,
                finished_s=at_s,
                admitted_s=seq.admitted_s,
                first_token_s=seq.first_token_s,
            )
        )

    def _finish(self, rec: RequestRecord) -> None:
        self.records.append(rec)
        self.record_end_s.append(rec.finished_s)
