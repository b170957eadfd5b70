"""Trace families generated in the repository: seeded, so every member is reproducible by (family, seed).

Each family is a shape of traffic an autoscaler meets in production; each seed draws one member (its
rates, times and burst heights from the ranges below), so a policy can be tuned on some members and
evaluated on others it never saw. Arrivals are a non-homogeneous Poisson process with the rate
``rate(t)`` (drawn second by second: within one second the rate is constant). Request shapes:

- **conversation mix** (every family): prompt and output lengths lognormal, fitted to the Azure
  LLM conversation trace 2023 (prompt mean 1155 and p95 ~4100 tokens: mu 6.293, sigma 1.232; output
  mean 211: mu 5.03, sigma 0.8), clipped to [1, 16000] and [1, 2048] tokens;
- **long prompts** (family ``long-prompts``): a fraction ``long`` of requests carry a prompt drawn
  uniformly from 10,000-16,000 tokens (RAG contexts, code files). On the default replica (15k prefill
  tokens/s, 8192-token step budget) such a prompt's time to first token is 0.68-1.1 s *on an idle
  replica*: above the interactive 500 ms target whatever the replica count. With ``long`` >= 5% the
  p95 TTFT has a floor that no capacity moves.

Families (rates in requests per second; ``duration_s`` default 3600):

| family | rate(t) |
|---|---|
| ``bursty`` | base 8-16; bursts (a two-state Markov-modulated process) of 2-4x base lasting 20-90 s, 3-8 per hour |
| ``long-prompts`` | 10-24 with a slow +-30% wave (period 20-40 min); 6-15% long prompts |
| ``diurnal`` | a day compressed into the hour: low 3-6 at the start and end, high 24-34 at the middle (raised cosine) |
| ``steps`` | a level held 5-15 min then a jump to another level in 4-32; with 10-20 min of no traffic in the middle |
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from ember_sim.records import Request

PROMPT_MU, PROMPT_SIGMA, OUTPUT_MU, OUTPUT_SIGMA = 6.293, 1.232, 5.03, 0.8
MAX_PROMPT, MAX_OUTPUT = 16_000, 2048
LONG_PROMPT = (10_000, 16_000)


def shape(rng: random.Random, long_fraction: float = 0.0) -> tuple[int, int]:
    """(prompt, output) tokens of one request of the conversation mix, or a long prompt."""
    out = min(MAX_OUTPUT, max(1, round(rng.lognormvariate(OUTPUT_MU, OUTPUT_SIGMA))))
    if long_fraction and rng.random() < long_fraction:
        return rng.randint(*LONG_PROMPT), out
    return min(MAX_PROMPT, max(1, round(rng.lognormvariate(PROMPT_MU, PROMPT_SIGMA)))), out


def generate(
    rate: Callable[[float], float],
    duration_s: float,
    seed: int,
    long_fraction: float = 0.0,
    prefix: str = "g",
) -> list[Request]:
    """Poisson arrivals with rate(t), constant within each second, and the conversation mix of shapes."""
    rng = random.Random(seed)
    out: list[Request] = []
    for sec in range(int(duration_s)):
        lam = max(0.0, rate(float(sec)))
        t = sec + (rng.expovariate(lam) if lam > 0 else 1.0)
        while t < sec + 1:
            p, g = shape(rng, long_fraction)
            out.append(Request(f"{prefix}{len(out)}", t, p, g))
            t += rng.expovariate(lam)
    return out


def bursty(seed: int, duration_s: float = 3600.0) -> list[Request]:
    rng = random.Random(seed * 7919 + 1)
    base = rng.uniform(8, 16)
    bursts = []
    for _ in range(rng.randint(3, 8)):
        at = rng.uniform(0, duration_s - 90)
        bursts.append((at, at + rng.uniform(20, 90), rng.uniform(2, 4)))

    def rate(t: float) -> float:
        return base * max([h for a, b, h in bursts if a <= t < b], default=1.0)

    return generate(rate, duration_s, seed, prefix="b")


def long_prompts(seed: int, duration_s: float = 3600.0) -> list[Request]:
    rng = random.Random(seed * 7919 + 2)
    level, period, frac = rng.uniform(10, 24), rng.uniform(1200, 2400), rng.uniform(0.06, 0.15)
    phase = rng.uniform(0, 2 * math.pi)

    def rate(t: float) -> float:
        return level * (1 + 0.3 * math.sin(2 * math.pi * t / period + phase))

    return generate(rate, duration_s, seed, long_fraction=frac, prefix="l")


def diurnal(seed: int, duration_s: float = 3600.0) -> list[Request]:
    rng = random.Random(seed * 7919 + 3)
    low, high = rng.uniform(3, 6), rng.uniform(24, 34)

    def rate(t: float) -> float:
        return low + (high - low) * 0.5 * (1 - math.cos(2 * math.pi * t / duration_s))

    return generate(rate, duration_s, seed, prefix="d")


def steps(seed: int, duration_s: float = 3600.0) -> list[Request]:
    rng = random.Random(seed * 7919 + 4)
    edges: list[tuple[float, float]] = []  # (start, level)
    t = 0.0
    while t < duration_s:
        edges.append((t, rng.uniform(4, 32)))
        t += rng.uniform(300, 900)
    gap_at = rng.uniform(0.35, 0.5) * duration_s
    gap = (gap_at, gap_at + rng.uniform(600, 1200))

    def rate(t: float) -> float:
        if gap[0] <= t < gap[1]:
            return 0.0
        return next(lv for at, lv in reversed(edges) if at <= t)

    return generate(rate, duration_s, seed, prefix="s")


FAMILIES: dict[str, Callable[..., list[Request]]] = {
    "bursty": bursty,
    "long-prompts": long_prompts,
    "diurnal": diurnal,
    "steps": steps,
}


def member(family: str, seed: int, duration_s: float = 3600.0) -> list[Request]:
    """One member of a family; raises KeyError naming the families for an unknown one."""
    if family not in FAMILIES:
        raise KeyError(f"unknown trace family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](seed, duration_s)
